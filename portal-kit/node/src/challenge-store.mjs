// Login challenges: issued to one session, usable once, fresh for `lifetimeSeconds`.
// In memory: a portal with several server processes keeps challenges in its session
// store instead and calls `register` / `consume` on a store per request.

import { randomBytes } from 'node:crypto';
import { LoginError, ErrorCodes } from './errors.mjs';
import { clockMillis } from './time.mjs';

const CHALLENGE = /^[A-Za-z0-9_-]{43,128}={0,2}$/;

export class ChallengeStore {
  /** @param {{lifetimeSeconds?: number, clock?: () => Date | number, maxEntries?: number}} [options] */
  constructor({ lifetimeSeconds = 300, clock, maxEntries = 100_000 } = {}) {
    if (!(lifetimeSeconds > 0)) throw new TypeError('lifetimeSeconds must be positive');
    this.lifetimeMs = lifetimeSeconds * 1000;
    this.now = clockMillis(clock);
    this.maxEntries = maxEntries;
    /** key: session + "\n" + challenge -> {issuedAt, used} */
    this.entries = new Map();
  }

  /** A fresh 32-byte challenge (base64url, no padding) for `session`. */
  issue(session = '') {
    this.#forgetOld();
    if (this.entries.size >= this.maxEntries) {
      throw new Error('too many outstanding login challenges');
    }
    const challenge = randomBytes(32).toString('base64url');
    this.register(challenge, session, this.now());
    return challenge;
  }

  /**
   * Remember a challenge issued elsewhere (another process, a test vector).
   * @param {string} challenge  @param {string} [session]  @param {Date | number} [issuedAt] now if absent
   */
  register(challenge, session = '', issuedAt = this.now(), { used = false } = {}) {
    checkSession(session);
    if (typeof challenge !== 'string' || !CHALLENGE.test(challenge)) {
      throw new TypeError('challenge must be base64url of at least 32 bytes');
    }
    const at = issuedAt instanceof Date ? issuedAt.getTime() : issuedAt;
    if (typeof at !== 'number' || !Number.isFinite(at)) throw new TypeError('bad issuedAt');
    this.entries.set(key(session, challenge), { issuedAt: at, used });
  }

  /** Use the challenge once; throws LoginError CHALLENGE_UNKNOWN / _USED / _EXPIRED. */
  consume(challenge, session = '') {
    checkSession(session);
    const entry = typeof challenge === 'string'
      ? this.entries.get(key(session, challenge)) : undefined;
    if (entry === undefined) throw new LoginError(ErrorCodes.CHALLENGE_UNKNOWN);
    if (entry.used) throw new LoginError(ErrorCodes.CHALLENGE_USED);
    entry.used = true; // whatever happens next, this challenge is spent
    if (this.now() - entry.issuedAt > this.lifetimeMs) {
      throw new LoginError(ErrorCodes.CHALLENGE_EXPIRED);
    }
  }

  // Entries are kept for one more lifetime after they expire, so a quick replay is told
  // apart from an unknown challenge; after that they go, so memory follows the issue rate.
  #forgetOld() {
    const limit = this.now() - 2 * this.lifetimeMs;
    for (const [k, entry] of this.entries) {
      if (entry.issuedAt < limit) this.entries.delete(k);
    }
  }
}

function checkSession(session) {
  if (typeof session !== 'string') throw new TypeError('session must be a string');
}

// Padding is optional (docs/protocol.md): "abc=" and "abc" are one challenge.
const key = (session, challenge) => `${session}\n${challenge.replace(/=+$/, '')}`;
