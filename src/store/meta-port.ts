// The meta aggregate of the storage port: a small key/value for server metadata (signing keys,
// persisted settings) shared by every process.

export interface MetaStore {
  /** Values are JSON; null when the key is absent. */
  getMeta(key: string): Promise<unknown>;
  /** Sets the value only if absent; returns the value now stored (yours or the earlier one). */
  putMetaIfAbsent(key: string, value: unknown): Promise<unknown>;
  putMeta(key: string, value: unknown): Promise<void>;
}

/** Every operation of MetaStore, for composites and proxies that forward them. */
export const META_OPERATIONS = ['getMeta', 'putMetaIfAbsent', 'putMeta'] as const satisfies readonly (keyof MetaStore)[];
