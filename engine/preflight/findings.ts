// What preflight finds: each finding names its object and its fix. Problems stop a migration;
// warnings do not.
export interface Finding {
  code: string;
  object?: string;
  message: string;
  fix?: string;
}

export interface Findings {
  problems: Finding[];
  warnings: Finding[];
}
