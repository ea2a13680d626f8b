// How a store is composed of its aggregate adapters: each port file lists its operations, and a
// composite (or a proxy to another thread) takes exactly those. A list that misses an operation
// leaves the composite without it, which fails to compile where the composite is typed as a port.

/** The named operations of `part`, bound to it. */
export function operationsOf<T extends object, K extends keyof T & string>(part: T, names: readonly K[]): Pick<T, K> {
  const out: Partial<Pick<T, K>> = {};
  for (const name of names) {
    const fn = part[name];
    if (typeof fn !== 'function') throw new TypeError(`${name} is not an operation of ${part.constructor.name}`);
    out[name] = (fn as (...args: unknown[]) => unknown).bind(part) as T[K];
  }
  return out as Pick<T, K>;
}
