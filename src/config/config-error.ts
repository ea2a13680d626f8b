// A configuration mistake, naming the variable (the process exits 2 with it). Its own module so
// that config.ts and the modules it loads (monitoring.ts) share it without a cycle.

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.variable = variable;
  }
}
