// Replays a Dockerfile without a container engine: each stage gets a scratch directory standing for
// its filesystem, which holds only what its COPY, WORKDIR and RUN lines put there (a container path
// /app is <scratch>/app). WORKDIR, ENV, ARG, USER and COPY (from the build context through
// .dockerignore, or --from a previous stage's scratch) are applied as Docker applies them, and every
// RUN line runs for real under /bin/sh in the mapped WORKDIR with the stage's ENV, except the lines
// that install Debian packages (see osPackageLine). This machine's system stands in for the base
// image's: its /usr, its `node`, its users.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Instructions in order: comment lines dropped (inside continuations too), `\` continuations joined. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { text: string; line: number } | null = null;
  text.split('\n').forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const continued = /\\\s*$/.test(raw);
    const piece = continued ? raw.replace(/\\\s*$/, '') : raw;
    pending = pending ? { text: pending.text + piece, line: pending.line } : { text: piece, line: i + 1 };
    if (continued) return;
    const m = /^\s*(\S+)\s*(.*)$/s.exec(pending.text)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: pending.line });
    pending = null;
  });
  if (pending) throw new Error(`Dockerfile ends inside a continued line`);
  return out;
}

/** A command as Docker keeps it: exec form (a JSON array) or shell form (run by /bin/sh -c). */
export function commandArgv(args: string): string[] {
  if (args.startsWith('[')) return JSON.parse(args) as string[];
  return ['/bin/sh', '-c', args];
}

/** `$NAME` and `${NAME}` from `vars`; an unknown name is an error rather than Docker's empty string. */
function expand(text: string, vars: Record<string, string>, line: number): string {
  return text.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    if (!(name in vars)) throw new Error(`line ${line}: $${name} is not defined`);
    return vars[name]!;
  });
}

/** Words split on blanks, with quotes ("…", '…') and backslash escapes as in a shell (ENV, COPY). */
function words(text: string): string[] {
  const out: string[] = [];
  let word: string | null = null;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word += text[++i]!;
      else word += c;
    } else if (/\s/.test(c)) {
      if (word !== null) out.push(word);
      word = null;
    } else {
      word ??= '';
      if (c === '"' || c === "'") quote = c;
      else if (c === '\\' && i + 1 < text.length) word += text[++i]!;
      else word += c;
    }
  }
  if (quote) throw new Error(`unterminated quote in: ${text}`);
  if (word !== null) out.push(word);
  return out;
}

// ---- .dockerignore ---------------------------------------------------------------------------

interface IgnoreRule {
  re: RegExp;
  exclude: boolean;
}

/** Docker's rules: patterns anchored at the context's root, `*` and `?` within one path segment,
 *  `**` across segments, `!` re-includes, the last matching rule wins, and a rule that matches a
 *  directory covers everything under it (here a `!` rule cannot re-include a path inside a directory
 *  that is excluded as a whole: COPY does not descend into it). */
export function dockerignore(text: string): (rel: string) => boolean {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split('\n')) {
    let p = raw.trim();
    if (p === '' || p.startsWith('#')) continue;
    const exclude = !p.startsWith('!');
    if (!exclude) p = p.slice(1).trim();
    p = path.posix.normalize(p).replace(/^\/+|\/+$/g, '');
    let re = '';
    for (let i = 0; i < p.length; i++) {
      const c = p[i]!;
      if (c === '*' && p[i + 1] === '*') {
        re += p[i + 2] === '/' ? '(?:.*/)?' : '.*';
        i += p[i + 2] === '/' ? 2 : 1;
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    rules.push({ re: new RegExp(`^${re}(?:/.*)?$`), exclude });
  }
  return (rel) => {
    let excluded = false;
    for (const r of rules) if (r.re.test(rel)) excluded = r.exclude;
    return excluded;
  };
}

// ---- OS package lines ------------------------------------------------------------------------

/** The commands a RUN line that installs Debian packages may consist of: apt-get itself and the
 *  setup of an extra apt repository (its key fetched into a keyring directory, its sources line,
 *  /etc/os-release read for the release's codename). */
const OS_PACKAGE_COMMANDS: RegExp[] = [
  /^(?:DEBIAN_FRONTEND=\w+ )?apt-get (?:update|install|purge|remove|autoremove|clean)\b/,
  /^install -d \/(?:usr\/share|etc\/apt)\/\S+$/,
  /^curl (?:-\w+ )*-o \/(?:usr\/share|etc\/apt)\/\S+ https:\/\/\S+$/,
  /^\. \/etc\/os-release$/,
  /^echo "deb [^"]*" > \/etc\/apt\/sources\.list\.d\/[\w.-]+\.list$/,
  /^rm -rf \/var\/lib\/apt\/lists\/\*$/,
];

/** The packages a RUN line installs if it is an apt-get line, null if it is not one. Such a line
 *  cannot run here (it needs the image's root filesystem and Debian's mirrors, and would change
 *  this machine): instead of being dropped it is checked to do nothing but install packages, and
 *  what it installs is returned for the caller to check. */
export function osPackageLine(run: string, line: number): string[] | null {
  if (!/\bapt-get\b/.test(run)) return null;
  const packages: string[] = [];
  for (const cmd of run.split(/&&|;/).map((c) => c.trim().replace(/\s+/g, ' '))) {
    if (!OS_PACKAGE_COMMANDS.some((re) => re.test(cmd)))
      throw new Error(
        `line ${line}: an apt-get RUN line also runs \`${cmd}\`, which the replay cannot check`,
      );
    const install = /apt-get install (.*)$/.exec(cmd);
    if (install) packages.push(...install[1]!.split(' ').filter((w) => !w.startsWith('-')));
  }
  return packages;
}

// ---- the replay ------------------------------------------------------------------------------

export interface Stage {
  name: string;
  /** The FROM line's image, ARGs expanded. */
  image: string;
  /** The scratch directory standing for the stage's `/`. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  user: string | null;
  volumes: string[];
  entrypoint: string[];
  cmd: string[];
  /** The HEALTHCHECK's command (its timing options are not replayed). */
  healthcheck: string[] | null;
}

export interface Replay {
  stages: Stage[];
  /** The last stage: the image. */
  image: Stage;
  /** RUN lines not run because they install Debian packages, with the packages. */
  osPackages: { line: number; packages: string[] }[];
}

export interface UnixUser {
  uid: number;
  gid: number;
  home: string;
}

/** A user of this machine by name (standing in for the base image's), from /etc/passwd. */
export function unixUser(name: string): UnixUser {
  for (const row of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = row.split(':');
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
  }
  throw new Error(`user ${name} (the base image's) does not exist on this machine; .ci/run creates it`);
}

/** A container path as a path of this machine: under the stage's scratch when its first component
 *  is there (put there by COPY, WORKDIR or RUN), else the system's own (the base image's stand-in). */
export function hostPath(stage: Stage, containerPath: string): string {
  if (!containerPath.startsWith('/')) return containerPath;
  const first = containerPath.split('/')[1];
  return first && fs.existsSync(path.join(stage.root, first))
    ? path.join(stage.root, containerPath)
    : containerPath;
}

/** The machine's environment that stands in for the base image's: the tools' PATH, npm's cache and
 *  settings under HOME, the trust store and proxies. */
export function baseEnv(home: string): Record<string, string> {
  // Not the checkout's node_modules/.bin, which npx and npm run put first.
  const PATH = (process.env.PATH ?? '/usr/bin:/bin')
    .split(':')
    .filter((d) => !d.includes('node_modules'))
    .join(':');
  const env: Record<string, string> = { PATH, HOME: home };
  for (const k of [
    'NODE_EXTRA_CA_CERTS',
    'HTTP_PROXY',
    'HTTPS_PROXY',
    'NO_PROXY',
    'http_proxy',
    'https_proxy',
  ]) {
    if (process.env[k]) env[k] = process.env[k]!;
  }
  return env;
}

function run(argv: string[], cwd: string, env: Record<string, string>, user: UnixUser | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    let output = '';
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`exit ${code ?? signal}\n${output}`)),
    );
  });
}

function copy(
  stage: Stage,
  args: string,
  line: number,
  vars: Record<string, string>,
  context: string,
  ignored: (rel: string) => boolean,
  stages: Stage[],
): void {
  const list = words(expand(args, vars, line));
  let from: Stage | null = null;
  while (list[0]?.startsWith('--')) {
    const flag = list.shift()!;
    const m = /^--from=(.+)$/.exec(flag);
    if (!m) throw new Error(`line ${line}: COPY ${flag} is not replayed`);
    from = stages.find((s) => s.name === m[1]) ?? null;
    if (!from) throw new Error(`line ${line}: COPY --from=${m[1]}: no such stage before it`);
  }
  const dest = list.pop()!;
  if (list.length === 0) throw new Error(`line ${line}: COPY needs a source and a destination`);
  const destPath = path.join(stage.root, path.posix.resolve(stage.workdir, dest));
  const intoDir = list.length > 1 || dest.endsWith('/') || dest === '.';
  for (const src of list) {
    if (/[*?[]/.test(src)) throw new Error(`line ${line}: COPY wildcards are not replayed`);
    let srcPath: string;
    let filter: (rel: string) => boolean = () => true;
    if (from) {
      srcPath = path.join(from.root, path.posix.resolve(from.workdir, src));
    } else {
      const rel = path.posix.normalize(src).replace(/^\/+|\/+$/g, '');
      if (rel.startsWith('..')) throw new Error(`line ${line}: COPY ${src} is outside the build context`);
      srcPath = path.join(context, rel);
      if (rel !== '.' && ignored(rel))
        throw new Error(`line ${line}: COPY ${src}: excluded by .dockerignore (the build would fail)`);
      filter = (r) => !ignored(r);
    }
    if (!fs.existsSync(srcPath)) throw new Error(`line ${line}: COPY ${src}: not found`);
    const relOf = (p: string) =>
      path
        .relative(from ? from.root : context, p)
        .split(path.sep)
        .join('/');
    const opts = {
      recursive: true,
      // Docker copies symlinks as they are (node_modules/.bin holds relative ones).
      verbatimSymlinks: true,
      filter: (s: string) => s === srcPath || filter(relOf(s)),
    };
    if (fs.statSync(srcPath).isDirectory()) {
      // A directory's contents go into the destination directory.
      fs.mkdirSync(destPath, { recursive: true });
      for (const entry of fs.readdirSync(srcPath)) {
        const s = path.join(srcPath, entry);
        if (opts.filter(s)) fs.cpSync(s, path.join(destPath, entry), opts);
      }
    } else {
      const target = intoDir ? path.join(destPath, path.basename(srcPath)) : destPath;
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.cpSync(srcPath, target, opts);
    }
  }
}

/** ARG NAME[=default] → [NAME, default]. */
function splitArg(text: string): [string, string | undefined] {
  const eq = text.indexOf('=');
  return eq < 0 ? [text.trim(), undefined] : [text.slice(0, eq).trim(), text.slice(eq + 1).trim()];
}

/** Replays `dockerfile` with `context` as the build context, in scratch directories under `scratch`. */
export async function replayDockerfile(opts: {
  dockerfile: string;
  context: string;
  scratch: string;
  /** Added to every RUN step's environment (stand-ins for what a networked build would fetch). */
  runEnv?: Record<string, string>;
}): Promise<Replay> {
  const ignoreFile = path.join(opts.context, '.dockerignore');
  const ignored = dockerignore(fs.existsSync(ignoreFile) ? fs.readFileSync(ignoreFile, 'utf8') : '');
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  const osPackages: Replay['osPackages'] = [];
  let stage: Stage | null = null;
  let args: Record<string, string> = {};
  for (const ins of parseDockerfile(fs.readFileSync(opts.dockerfile, 'utf8'))) {
    if (ins.keyword === 'FROM') {
      const [image, as, name] = words(expand(ins.args, globalArgs, ins.line));
      const stageName = as?.toUpperCase() === 'AS' && name ? name : String(stages.length);
      const root = path.join(opts.scratch, `stage-${stages.length}-${stageName}`);
      // Traversable by the image's user, as `/` is.
      fs.mkdirSync(root, { recursive: true, mode: 0o755 });
      stage = {
        name: stageName,
        image: image!,
        root,
        workdir: '/',
        env: {},
        user: null,
        volumes: [],
        entrypoint: [],
        cmd: [],
        healthcheck: null,
      };
      stages.push(stage);
      args = {};
      continue;
    }
    if (!stage) {
      if (ins.keyword !== 'ARG') throw new Error(`line ${ins.line}: ${ins.keyword} before FROM`);
      const [k, v] = splitArg(ins.args);
      globalArgs[k] = v ?? '';
      continue;
    }
    const vars = { ...args, ...stage.env };
    switch (ins.keyword) {
      case 'ARG': {
        const [k, v] = splitArg(ins.args);
        args[k] = v ?? globalArgs[k] ?? '';
        break;
      }
      case 'WORKDIR':
        stage.workdir = path.posix.resolve(stage.workdir, expand(ins.args, vars, ins.line));
        fs.mkdirSync(path.join(stage.root, stage.workdir), { recursive: true, mode: 0o755 });
        break;
      case 'ENV':
        for (const w of words(ins.args)) {
          const eq = w.indexOf('=');
          if (eq < 1) throw new Error(`line ${ins.line}: ENV ${w}: only the KEY=value form is replayed`);
          stage.env[w.slice(0, eq)] = expand(w.slice(eq + 1), vars, ins.line);
        }
        break;
      case 'COPY':
        copy(stage, ins.args, ins.line, vars, opts.context, ignored, stages);
        break;
      case 'RUN': {
        const packages = osPackageLine(ins.args, ins.line);
        if (packages) {
          osPackages.push({ line: ins.line, packages });
          break;
        }
        const user = stage.user ? unixUser(stage.user) : null;
        const env = {
          ...baseEnv(user?.home ?? process.env.HOME ?? '/root'),
          ...opts.runEnv,
          ...args,
          ...stage.env,
        };
        try {
          await run(commandArgv(ins.args), path.join(stage.root, stage.workdir), env, user);
        } catch (err) {
          throw new Error(`line ${ins.line}: RUN ${ins.args} failed: ${(err as Error).message}`);
        }
        break;
      }
      case 'USER':
        stage.user = expand(ins.args, vars, ins.line);
        break;
      case 'VOLUME':
        stage.volumes.push(
          ...(ins.args.startsWith('[') ? (JSON.parse(ins.args) as string[]) : words(ins.args)),
        );
        break;
      case 'EXPOSE':
        // Documentation only: the port pgferry binds is PGFERRY_HTTP's.
        break;
      case 'HEALTHCHECK': {
        const m = /^((?:--\S+\s+)*)CMD\s+(.*)$/s.exec(ins.args);
        if (!m)
          throw new Error(
            `line ${ins.line}: HEALTHCHECK ${ins.args}: only HEALTHCHECK [options] CMD is replayed`,
          );
        stage.healthcheck = commandArgv(m[2]!);
        break;
      }
      case 'ENTRYPOINT':
        stage.entrypoint = commandArgv(ins.args);
        // As in Docker, an ENTRYPOINT resets the CMD inherited so far.
        stage.cmd = [];
        break;
      case 'CMD':
        stage.cmd = commandArgv(ins.args);
        break;
      default:
        throw new Error(`line ${ins.line}: ${ins.keyword} is not replayed`);
    }
  }
  if (!stage) throw new Error('no FROM line');
  return { stages, image: stage, osPackages };
}

/** How the image starts a container: ENTRYPOINT + CMD (a shell-form ENTRYPOINT takes no CMD) and the
 *  HEALTHCHECK command, container paths in them and in ENV mapped to this machine, the environment
 *  the image's ENV plus `env` (as `docker run -e`), the user USER names. */
export function containerCommand(
  image: Stage,
  env: Record<string, string>,
): {
  argv: string[];
  healthcheck: string[] | null;
  env: Record<string, string>;
  cwd: string;
  user: UnixUser | null;
} {
  const user = image.user ? unixUser(image.user) : null;
  const mapped = Object.fromEntries(Object.entries(image.env).map(([k, v]) => [k, hostPath(image, v)]));
  const shellEntrypoint = image.entrypoint[0] === '/bin/sh' && image.entrypoint[1] === '-c';
  const argv = [...image.entrypoint, ...(shellEntrypoint ? [] : image.cmd)].map((a) => hostPath(image, a));
  return {
    argv,
    healthcheck: image.healthcheck ? image.healthcheck.map((a) => hostPath(image, a)) : null,
    env: { ...baseEnv(user?.home ?? '/root'), ...mapped, ...env },
    cwd: path.join(image.root, image.workdir),
    user,
  };
}
