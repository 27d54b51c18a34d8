import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** RabbitMQ's extended 0-9-1 XML, as packaged by Debian's amqp-specs. */
const XML_PATH = '/usr/share/amqp/specs/0-9-1-rabbit/amqp0-9-1.stripped.extended.xml';

interface JsonField {
  name: string;
  domain: string;
  reserved?: boolean;
  comment?: string;
}
interface JsonMethod {
  name: string;
  id: number;
  synchronous: boolean;
  content: boolean;
  sentBy: 'client' | 'server' | 'both';
  responses: string[];
  fields: JsonField[];
  deprecated?: boolean;
  extension?: string;
}
interface JsonClass {
  name: string;
  id: number;
  methods: JsonMethod[];
  properties?: JsonField[];
  extension?: string;
}
interface JsonSpec {
  major: number;
  minor: number;
  revision: number;
  port: number;
  constants: { name: string; value: number }[];
  replyCodes: { name: string; value: number; kind: 'hard' | 'soft' | 'success'; extension?: string }[];
  domains: { name: string; type: string }[];
  classes: JsonClass[];
}

const SPEC = JSON.parse(
  readFileSync(new URL('../../spec/amqp0-9-1.json', import.meta.url), 'utf8'),
) as JsonSpec;

const PRIMITIVES = ['bit', 'octet', 'short', 'long', 'longlong', 'shortstr', 'longstr', 'timestamp', 'table'];

// ---------------------------------------------------------------------------------------------
// a small regex reader for the stripped XML (no comments or text content inside elements)

type Attrs = Record<string, string>;

function attrs(s: string): Attrs {
  const out: Attrs = {};
  for (const m of s.matchAll(/([\w-]+)\s*=\s*"([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

/** Elements `<tag …>…</tag>` or `<tag …/>` directly in `text` (no nesting of the same tag). */
function elements(text: string, tag: string): { attrs: Attrs; body: string }[] {
  const re = new RegExp(`<${tag}\\b([^>]*?)(/>|>([\\s\\S]*?)</${tag}>)`, 'g');
  return [...text.matchAll(re)].map((m) => ({ attrs: attrs(m[1]!), body: m[3] ?? '' }));
}

interface XmlField {
  name: string;
  domain: string;
  reserved: boolean;
}
interface XmlMethod {
  name: string;
  id: number;
  synchronous: boolean;
  content: boolean;
  deprecated: boolean;
  chassis: string[];
  responses: string[];
  fields: XmlField[];
}
interface XmlClass {
  name: string;
  id: number;
  methods: XmlMethod[];
  properties: XmlField[];
}

const field = (a: Attrs): XmlField => ({
  name: a['name']!,
  domain: a['domain'] ?? a['type']!,
  reserved: a['reserved'] === '1',
});

function parseXml(xml: string) {
  const text = xml.replace(/<!--[\s\S]*?-->/g, '');
  const root = attrs(/<amqp\b([^>]*)>/.exec(text)![1]!);
  const constants = elements(text, 'constant').map((e) => e.attrs);
  const domains = elements(text, 'domain').map((e) => ({ name: e.attrs['name']!, type: e.attrs['type']! }));
  const classes: XmlClass[] = elements(text, 'class').map((c) => {
    const methods = elements(c.body, 'method').map(
      (m): XmlMethod => ({
        name: m.attrs['name']!,
        id: Number(m.attrs['index']),
        synchronous: m.attrs['synchronous'] === '1',
        content: m.attrs['content'] === '1',
        deprecated: m.attrs['deprecated'] === '1',
        chassis: elements(m.body, 'chassis').map((x) => x.attrs['name']!),
        responses: elements(m.body, 'response').map((x) => x.attrs['name']!),
        fields: elements(m.body, 'field').map((f) => field(f.attrs)),
      }),
    );
    // class-level fields (outside methods) are the content properties
    const outside = c.body.replace(/<method\b[\s\S]*?<\/method>/g, '');
    return {
      name: c.attrs['name']!,
      id: Number(c.attrs['index']),
      methods,
      properties: elements(outside, 'field').map((f) => field(f.attrs)),
    };
  });
  return { root, constants, domains, classes };
}

/** chassis names who must implement (receive) the method → who sends it. */
function sentBy(chassis: string[]): string {
  const client = chassis.includes('client');
  const server = chassis.includes('server');
  if (client && server) return 'both';
  return client ? 'server' : 'client';
}

/** frame-* constants without an error class (frame-error 501 is a reply code). */
const isFrameConstant = (c: Attrs): boolean => c['name']!.startsWith('frame-') && c['class'] === undefined;

const jsonMethod = (c: string, m: string): JsonMethod | undefined =>
  SPEC.classes.find((x) => x.name === c)?.methods.find((x) => x.name === m);

// ---------------------------------------------------------------------------------------------

describe.runIf(existsSync(XML_PATH))('spec/amqp0-9-1.json matches the RabbitMQ 0-9-1 XML', () => {
  const xml = parseXml(existsSync(XML_PATH) ? readFileSync(XML_PATH, 'utf8') : '<amqp>');

  it('the reader found the whole XML', () => {
    expect(xml.classes.map((c) => c.name)).toEqual([
      'connection',
      'channel',
      'exchange',
      'queue',
      'basic',
      'tx',
      'confirm',
    ]);
    expect(xml.classes.flatMap((c) => c.methods).length).toBeGreaterThan(50);
    expect(xml.root).toMatchObject({ major: '0', minor: '9', revision: '1', port: '5672' });
  });

  it('version and port match', () => {
    expect([SPEC.major, SPEC.minor, SPEC.revision, SPEC.port]).toEqual([0, 9, 1, 5672]);
  });

  it('every class id matches', () => {
    for (const c of xml.classes) {
      const j = SPEC.classes.find((x) => x.name === c.name);
      expect(j, c.name).toBeDefined();
      expect(j!.id, c.name).toBe(c.id);
    }
  });

  it('every XML method is in the JSON with the same id, flags, sender, responses and fields', () => {
    for (const c of xml.classes) {
      for (const m of c.methods) {
        const label = `${c.name}.${m.name}`;
        const j = jsonMethod(c.name, m.name);
        expect(j, label).toBeDefined();
        expect(
          {
            id: j!.id,
            synchronous: j!.synchronous,
            content: j!.content,
            deprecated: j!.deprecated === true,
            sentBy: j!.sentBy,
            responses: j!.responses,
          },
          label,
        ).toEqual({
          id: m.id,
          synchronous: m.synchronous,
          content: m.content,
          deprecated: m.deprecated,
          sentBy: sentBy(m.chassis),
          responses: m.responses,
        });
        // name, domain (or type), order and reserved flag of every field
        expect(
          j!.fields.map((f) => ({ name: f.name, domain: f.domain, reserved: f.reserved === true })),
          label,
        ).toEqual(m.fields);
      }
    }
  });

  it('every JSON method or class missing from the XML is marked as a RabbitMQ extension', () => {
    const missing: string[] = [];
    for (const c of SPEC.classes) {
      const xc = xml.classes.find((x) => x.name === c.name);
      if (!xc) expect(c.extension, c.name).toBe('rabbitmq');
      for (const m of c.methods) {
        if (xc?.methods.some((x) => x.name === m.name)) continue;
        missing.push(`${c.name}.${m.name}`);
        expect(m.extension, `${c.name}.${m.name}`).toBe('rabbitmq');
      }
    }
    // the only ones the XML lacks are RabbitMQ's connection extensions and legacy access class
    expect(missing.sort()).toEqual([
      'access.request',
      'access.request-ok',
      'connection.blocked',
      'connection.unblocked',
      'connection.update-secret',
      'connection.update-secret-ok',
    ]);
  });

  it('frame constants match', () => {
    const frameConsts = xml.constants.filter(isFrameConstant);
    expect(SPEC.constants).toEqual(frameConsts.map((c) => ({ name: c['name'], value: Number(c['value']) })));
  });

  it('reply codes and their hard/soft classes match; 312 no-route is our extension', () => {
    const codes = xml.constants.filter((c) => !isFrameConstant(c));
    const kind = (cls: string | undefined): string =>
      cls === 'hard-error' ? 'hard' : cls === 'soft-error' ? 'soft' : 'success';
    const fromXml = codes.map((c) => ({
      name: c['name'],
      value: Number(c['value']),
      kind: kind(c['class']),
    }));
    const ours = SPEC.replyCodes
      .filter((r) => r.extension === undefined)
      .map(({ name, value, kind }) => ({
        name,
        value,
        kind,
      }));
    expect(ours).toEqual(fromXml);
    const extra = SPEC.replyCodes.filter((r) => r.extension !== undefined);
    expect(extra).toEqual([{ name: 'no-route', value: 312, kind: 'soft', extension: 'rabbitmq' }]);
  });

  it('domains match', () => {
    expect(SPEC.domains).toEqual(xml.domains);
  });

  it("basic properties match, with the XML's 'reserved' named cluster-id", () => {
    const xb = xml.classes.find((c) => c.name === 'basic')!;
    const jb = SPEC.classes.find((c) => c.name === 'basic')!;
    const rename = (n: string): string => (n === 'reserved' ? 'cluster-id' : n);
    expect(xb.properties.length).toBe(14);
    expect(jb.properties!.map((p) => ({ name: p.name, domain: p.domain }))).toEqual(
      xb.properties.map((p) => ({ name: rename(p.name), domain: p.domain })),
    );
    for (const c of xml.classes) if (c.name !== 'basic') expect(c.properties, c.name).toEqual([]);
  });
});

describe('spec/amqp0-9-1.json is structurally sound', () => {
  it('class ids and names are unique', () => {
    const ids = SPEC.classes.map((c) => c.id);
    const names = SPEC.classes.map((c) => c.name);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(names).size).toBe(names.length);
    for (const id of ids) expect(Number.isInteger(id) && id > 0 && id < 65536).toBe(true);
  });

  it('method ids and names are unique within each class', () => {
    for (const c of SPEC.classes) {
      const ids = c.methods.map((m) => m.id);
      const names = c.methods.map((m) => m.name);
      expect(new Set(ids).size, c.name).toBe(ids.length);
      expect(new Set(names).size, c.name).toBe(names.length);
      for (const id of ids) expect(Number.isInteger(id) && id > 0 && id < 65536).toBe(true);
    }
  });

  it('responses name existing methods of the same class, and only synchronous methods have them', () => {
    for (const c of SPEC.classes) {
      for (const m of c.methods) {
        for (const r of m.responses)
          expect(
            c.methods.some((x) => x.name === r),
            `${c.name}.${m.name} → ${r}`,
          ).toBe(true);
        if (m.responses.length > 0) expect(m.synchronous, `${c.name}.${m.name}`).toBe(true);
      }
    }
  });

  it('every field domain resolves to a primitive type, field names are unique, reserved fields are named so', () => {
    const domains = new Map(SPEC.domains.map((d) => [d.name, d.type]));
    for (const d of SPEC.domains) expect(PRIMITIVES, d.name).toContain(d.type);
    for (const c of SPEC.classes) {
      for (const m of [...c.methods, { name: 'properties', fields: c.properties ?? [] }]) {
        const names = m.fields.map((f) => f.name);
        expect(new Set(names).size, `${c.name}.${m.name}`).toBe(names.length);
        for (const f of m.fields) {
          const t = domains.get(f.domain) ?? f.domain;
          expect(PRIMITIVES, `${c.name}.${m.name}.${f.name}`).toContain(t);
          if (f.reserved) expect(f.name, `${c.name}.${m.name}`).toMatch(/^reserved-\d+$/);
        }
      }
    }
  });

  it('flags have the right shapes', () => {
    for (const c of SPEC.classes) {
      for (const m of c.methods) {
        const label = `${c.name}.${m.name}`;
        expect(typeof m.synchronous, label).toBe('boolean');
        expect(typeof m.content, label).toBe('boolean');
        expect(['client', 'server', 'both'], label).toContain(m.sentBy);
        if (m.content) expect(c.name, label).toBe('basic');
        if (m.extension !== undefined) expect(m.extension, label).toBe('rabbitmq');
      }
    }
  });

  it('constants and reply codes are unique; reply-code kinds are known', () => {
    const values = SPEC.replyCodes.map((r) => r.value);
    expect(new Set(values).size).toBe(values.length);
    const names = [...SPEC.constants, ...SPEC.replyCodes].map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    for (const r of SPEC.replyCodes) expect(['hard', 'soft', 'success']).toContain(r.kind);
  });

  it('only the basic class has content properties, 14 of them', () => {
    for (const c of SPEC.classes) {
      if (c.name === 'basic') expect(c.properties?.length).toBe(14);
      else expect(c.properties, c.name).toBeUndefined();
    }
  });
});
