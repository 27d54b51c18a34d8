/**
 * Child-process entry of a bench worker (forked by bench/run.ts with the tsx loader): runs a
 * WorkerCore and answers the coordinator's operations over IPC as {id, ok, result | error}.
 * Exits when the coordinator goes away, so a killed run leaves no clients behind.
 */

import { WorkerCore, type WorkerOp } from './roles.js';

interface Request {
  id: number;
  msg: WorkerOp;
}

if (process.send === undefined) {
  process.stderr.write('bench/worker.ts is started by bench/run.ts (npm run bench), not directly\n');
  process.exit(2);
}

const core = new WorkerCore();
const reply = (m: unknown): void => {
  if (process.connected) process.send!(m);
};

process.on('message', (req: Request) => {
  core.handle(req.msg).then(
    (result) => reply({ id: req.id, ok: true, result }),
    (e: unknown) => reply({ id: req.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
  );
  if (req.msg.op === 'close') {
    // leave shortly after the close completes (or anyway)
    setTimeout(() => process.exit(0), 5000).unref();
  }
});

process.on('disconnect', () => process.exit(0));
