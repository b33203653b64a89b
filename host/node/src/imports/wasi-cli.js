// wasi:cli for a component transpiled by jco: preview2-shim's streams and
// terminals, with the arguments and environment this host gives it.

import * as shim from '@bytecodealliance/preview2-shim';

/** The wasi:cli imports, `args` and `env` (pairs) as its only settings. */
export function wasiCli(args, env) {
  const { cli } = shim;
  return {
    'wasi:cli/environment': { getArguments: () => args, getEnvironment: () => env, initialCwd: () => undefined },
    'wasi:cli/exit': cli.exit,
    'wasi:cli/stdin': cli.stdin,
    'wasi:cli/stdout': cli.stdout,
    'wasi:cli/stderr': cli.stderr,
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
  };
}
