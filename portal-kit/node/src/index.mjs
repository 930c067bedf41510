// imza-portal-verify: a portal's server side of `auth.login` on node:crypto alone.
export { ChallengeStore } from './challenge-store.mjs';
export { LoginVerifier, TOKEN_FORMAT } from './verifier.mjs';
export { LoginError, ErrorCodes } from './errors.mjs';
