/**
 * The machine's loopback ceiling for large writes: one process writes 256 KiB buffers to
 * itself over a TCP socket for 4 s and prints the rate. A broker relaying large messages must
 * receive and send every byte, so this bounds what scenario (f2) can reach on a machine.
 *
 *   npx tsx bench/loopback.ts
 */
import net from 'node:net';

const SIZE = 256 * 1024;
const SECONDS = 4;
const buf = Buffer.alloc(SIZE, 1);
let received = 0;

const server = net.createServer((s) => {
  s.on('data', (d: Buffer) => {
    received += d.length;
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as net.AddressInfo;
  const c = net.connect(port, '127.0.0.1', () => {
    const t0 = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
    const pump = (): void => {
      while (c.write(buf)) {
        if (elapsed() > SECONDS) {
          const s = elapsed();
          process.stdout.write(
            `loopback, ${SIZE / 1024} KiB writes: ${(received / 1e9 / s).toFixed(2)} GB/s received over ${s.toFixed(1)} s\n`,
          );
          process.exit(0);
        }
      }
    };
    c.on('drain', pump);
    pump();
  });
});
