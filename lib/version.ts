/** Strom's version; the release script stamps it (and the commit) at build time. */
export const VERSION = "0.1.0";
/** The commit this build came from, or "dev". */
export const COMMIT = "dev";
