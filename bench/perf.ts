/**
 * The load generator: `npm run bench -- --uri amqp://... --producers 1 --consumers 1 --size 16
 * --duration 15`. Prints progress and a one-line summary on stderr and the JSON result on stdout
 * (and to --json FILE). Exit status 1 when the run failed. See bench/README.md.
 */

import { writeFileSync } from 'node:fs';
import { parseOptions, USAGE, UsageError } from './options.js';
import { runBench, summaryLine } from './run.js';

let opts: ReturnType<typeof parseOptions>;
try {
  opts = parseOptions(process.argv.slice(2));
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  process.stderr.write(`bench: ${e.message}\n\n${USAGE}`);
  process.exit(2);
}
if (opts === null) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const result = await runBench(opts, (line) => process.stderr.write(`${line}\n`));
const json = JSON.stringify(result, null, 2);
process.stdout.write(`${json}\n`);
if (opts.json !== '') writeFileSync(opts.json, `${json}\n`);
process.stderr.write(`${summaryLine(result)}\n`);
process.exit(result.ok ? 0 : 1);
