// The verifier and the challenge store read the time only through an injected clock, so
// tests and the vectors can fix it.

/** @param {(() => Date | number) | undefined} clock  @returns {() => number} ms since epoch */
export function clockMillis(clock) {
  if (clock === undefined) return () => Date.now();
  if (typeof clock !== 'function') throw new TypeError('clock must be a function');
  return () => {
    const value = clock();
    const ms = value instanceof Date ? value.getTime() : value;
    if (typeof ms !== 'number' || !Number.isFinite(ms)) {
      throw new TypeError('clock must return a Date or milliseconds');
    }
    return ms;
  };
}
