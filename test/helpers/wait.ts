/** Polls `pred` until it holds; fails with `what` after `ms` (a guard against hangs, not a timing assertion). */
export async function waitFor(pred: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
