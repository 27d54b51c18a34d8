/**
 * A virtual host: an isolated namespace of exchanges, queues and bindings. Routing and queues
 * arrive with the routing issue; for now a vhost is a name that connections open.
 */
export class VHost {
  constructor(readonly name: string) {}
}

export class VHostRegistry {
  private readonly vhosts = new Map<string, VHost>();

  add(name: string): VHost {
    let v = this.vhosts.get(name);
    if (!v) {
      v = new VHost(name);
      this.vhosts.set(name, v);
    }
    return v;
  }

  get(name: string): VHost | undefined {
    return this.vhosts.get(name);
  }
}
