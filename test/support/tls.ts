// Certificates for TLS-only test servers, made with openssl: a test CA and a server certificate it
// signed (RDS's case: verify-full with sslrootcert), a self-signed certificate nothing can verify
// (Heroku's case: sslmode=require), and a second CA that signed neither (the wrong bundle).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCerts {
  dir: string;
  ca: string;
  otherCa: string;
  signed: { cert: string; key: string };
  selfSigned: { cert: string; key: string };
}

const SAN = 'subjectAltName=DNS:localhost,IP:127.0.0.1';

export function makeCerts(): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-certs-'));
  // The postgres user copies nothing from here (the cluster copies the files), but may traverse.
  fs.chmodSync(dir, 0o755);
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const newKey = ['-newkey', 'rsa:2048', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    '-days',
    '3',
    '-subj',
    '/CN=pgferry test CA',
  );
  openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    f('other-ca.key'),
    '-out',
    f('other-ca.crt'),
    '-days',
    '3',
    '-subj',
    '/CN=another CA',
  );
  openssl('req', ...newKey, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(f('san.ext'), `${SAN}\n`);
  openssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.crt'),
    '-days',
    '3',
    '-extfile',
    f('san.ext'),
  );
  openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    f('self.key'),
    '-out',
    f('self.crt'),
    '-days',
    '3',
    '-subj',
    '/CN=self-signed',
    '-addext',
    SAN,
  );
  return {
    dir,
    ca: f('ca.crt'),
    otherCa: f('other-ca.crt'),
    signed: { cert: f('server.crt'), key: f('server.key') },
    selfSigned: { cert: f('self.crt'), key: f('self.key') },
  };
}
