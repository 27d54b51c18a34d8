/**
 * The user store: who may log in, with which password, from where, into which vhosts.
 * Passwords are kept as salted SHA-256 hashes (RabbitMQ's rabbit_password_hashing_sha256 scheme:
 * 4-byte salt, hash = sha256(salt ++ utf8 password)).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface User {
  readonly name: string;
  /** salt (4 bytes) followed by the SHA-256 digest */
  readonly passwordHash: Buffer;
  readonly tags: readonly string[];
  /** vhosts this user may open */
  readonly vhosts: ReadonlySet<string>;
}

export function hashPassword(password: string, salt: Buffer = randomBytes(4)): Buffer {
  const digest = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, digest]);
}

export function checkPassword(user: User, password: string): boolean {
  const salt = user.passwordHash.subarray(0, 4);
  const expected = user.passwordHash.subarray(4);
  const actual = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export type AuthResult = { ok: true; user: User } | { ok: false; reason: string };

export class UserStore {
  private readonly users = new Map<string, User>();
  private readonly loopbackOnly: Set<string>;

  constructor(loopbackUsers: readonly string[]) {
    this.loopbackOnly = new Set(loopbackUsers);
  }

  add(name: string, password: string, tags: string[] = [], vhosts: string[] = ['/']): User {
    const user: User = { name, passwordHash: hashPassword(password), tags, vhosts: new Set(vhosts) };
    this.users.set(name, user);
    return user;
  }

  /** Recovery: a stored user with its password hash. */
  addHashed(name: string, passwordHash: Buffer, tags: string[], vhosts: string[]): User {
    const user: User = { name, passwordHash, tags, vhosts: new Set(vhosts) };
    this.users.set(name, user);
    return user;
  }

  get size(): number {
    return this.users.size;
  }

  get(name: string): User | undefined {
    return this.users.get(name);
  }

  /** Checks credentials and the loopback rule. The reason is for the log, never for the client. */
  authenticate(name: string, password: string, fromLoopback: boolean): AuthResult {
    const user = this.users.get(name);
    if (!user) return { ok: false, reason: `user '${name}' - invalid credentials` };
    if (!checkPassword(user, password)) return { ok: false, reason: `user '${name}' - invalid credentials` };
    if (!fromLoopback && this.loopbackOnly.has(name)) {
      return { ok: false, reason: `user '${name}' can only connect via localhost` };
    }
    return { ok: true, user };
  }
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  if (address === '::1') return true;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.');
}
