import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChallengeStore, LoginError } from '../src/index.mjs';

const code = (fn) => {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof LoginError, String(error));
    return error.code;
  }
  return null;
};

test('a challenge is 32 random bytes, base64url, usable once by its own session', () => {
  let now = 1_000_000;
  const store = new ChallengeStore({ clock: () => now });
  const challenge = store.issue('alice');
  assert.match(challenge, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(challenge, 'base64url').length, 32);
  assert.notEqual(store.issue('alice'), challenge);
  assert.equal(code(() => store.consume(challenge, 'bob')), 'CHALLENGE_UNKNOWN');
  assert.equal(code(() => store.consume(challenge, 'alice')), null);
  assert.equal(code(() => store.consume(challenge, 'alice')), 'CHALLENGE_USED');
  now += 1;
  assert.equal(code(() => store.consume('A'.repeat(43), 'alice')), 'CHALLENGE_UNKNOWN');
});

test('fresh for exactly the lifetime, expired one second later, spent either way', () => {
  let now = 5_000_000;
  const store = new ChallengeStore({ clock: () => new Date(now) });
  const atLimit = store.issue('s');
  const late = store.issue('s');
  now += 300_000;
  assert.equal(code(() => store.consume(atLimit, 's')), null);
  now += 1000;
  assert.equal(code(() => store.consume(late, 's')), 'CHALLENGE_EXPIRED');
  assert.equal(code(() => store.consume(late, 's')), 'CHALLENGE_USED');
});

test('lifetime and recorded challenges from elsewhere', () => {
  const now = Date.UTC(2031, 0, 1);
  const store = new ChallengeStore({ lifetimeSeconds: 60, clock: () => now });
  const challenge = 'HvrtOq8mHlHY9e3dn7EEaQAys5_NtlrIAO4Yi2O6KeM';
  store.register(challenge, 's', now - 61_000);
  assert.equal(code(() => store.consume(challenge, 's')), 'CHALLENGE_EXPIRED');
  store.register(challenge, 't', now - 59_000, { used: true });
  assert.equal(code(() => store.consume(challenge, 't')), 'CHALLENGE_USED');
  assert.throws(() => store.register('short', 's', now), TypeError);
  assert.throws(() => store.issue(42), TypeError);
});

test('padding is optional: one challenge with or without it', () => {
  const store = new ChallengeStore({ clock: () => 0 });
  const challenge = store.issue();
  assert.equal(code(() => store.consume(`${challenge}=`)), null);
  assert.equal(code(() => store.consume(challenge)), 'CHALLENGE_USED');
  assert.equal(code(() => store.consume(challenge, 'other')), 'CHALLENGE_UNKNOWN');
});

test('a replay soon after expiry is still a replay; later ones are forgotten', () => {
  let now = 0;
  const store = new ChallengeStore({ clock: () => now, maxEntries: 3 });
  const first = store.issue('a');
  store.consume(first, 'a');
  store.issue('b');
  store.issue('c');
  assert.throws(() => store.issue('d'), /too many/);
  now += 600_000; // expired one lifetime ago: still remembered
  assert.throws(() => store.issue('d'), /too many/);
  assert.equal(code(() => store.consume(first, 'a')), 'CHALLENGE_USED');
  now += 1000;
  store.issue('d');
  assert.equal(store.entries.size, 1);
  assert.equal(code(() => store.consume(first, 'a')), 'CHALLENGE_UNKNOWN');
});
