/** A failure already explained to the user; main() prints its message and exits with its code. */
export class ExitError extends Error {
  override readonly name = 'ExitError';
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Wrong flags or arguments (exit code 2, like getopt-based tools). */
export class UsageError extends ExitError {
  constructor(message: string) {
    super(message, 2);
  }
}
