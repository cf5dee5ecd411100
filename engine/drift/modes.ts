// --drift: on a shape difference, pause replay (`pause`, the default), or first apply to the target
// the changes that cannot change a row and pause only on the others (`additive`).
export const DRIFT_MODES = ['pause', 'additive'] as const;
export type DriftMode = (typeof DRIFT_MODES)[number];
