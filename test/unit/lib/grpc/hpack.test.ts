import { describe, expect, it } from 'vitest';
import { encodeHeaderBlock, HpackDecoder, huffmanCode, huffmanDecode } from '../../../../lib/grpc/hpack.js';

// HPACK against the examples of RFC 7541 Appendix C and the code values of its Appendix B.

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const plain = (fields: { name: string; value: string }[]) => fields.map(({ name, value }) => [name, value]);

describe('HPACK', () => {
  it('derives the Huffman codes of Appendix B from the code lengths', () => {
    expect(huffmanCode(0)).toEqual({ code: 0x1ff8, bits: 13 });
    expect(huffmanCode(1)).toEqual({ code: 0x7fffd8, bits: 23 });
    expect(huffmanCode('0'.charCodeAt(0))).toEqual({ code: 0x0, bits: 5 });
    expect(huffmanCode('a'.charCodeAt(0))).toEqual({ code: 0x3, bits: 5 });
    expect(huffmanCode(' '.charCodeAt(0))).toEqual({ code: 0x14, bits: 6 });
    expect(huffmanCode('/'.charCodeAt(0))).toEqual({ code: 0x18, bits: 6 });
    expect(huffmanCode(200)).toEqual({ code: 0x3ffffe2, bits: 26 });
    expect(huffmanCode(255)).toEqual({ code: 0x3ffffee, bits: 26 });
    expect(huffmanCode(256)).toEqual({ code: 0x3fffffff, bits: 30 });
  });

  it('decodes Huffman strings and refuses bad padding', () => {
    expect(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')).toString()).toBe('www.example.com');
    expect(huffmanDecode(hex('a8eb 1064 9cbf')).toString()).toBe('no-cache');
    // "a" is 00011: padded with ones it is 0x1f; padded with zeros it is invalid.
    expect(huffmanDecode(hex('1f')).toString()).toBe('a');
    expect(() => huffmanDecode(hex('18'))).toThrow(/padding/);
  });

  it('decodes the request examples without Huffman (C.3), keeping the dynamic table', () => {
    const d = new HpackDecoder();
    expect(plain(d.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d')))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    expect(plain(d.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865')))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
    ]);
  });

  it('decodes the request examples with Huffman (C.4)', () => {
    const d = new HpackDecoder();
    expect(plain(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    expect(plain(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf')))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
    ]);
  });

  it('evicts from the dynamic table and follows a table size update', () => {
    const d = new HpackDecoder(60);
    d.decode(hex('4003 6162 6303 7879 7a')); // abc: xyz, 38 bytes
    d.decode(hex('4003 6465 6603 7576 77')); // def: uvw evicts abc
    expect(plain(d.decode(hex('be')))).toEqual([['def', 'uvw']]);
    expect(() => d.decode(hex('bf'))).toThrow(/past the dynamic table/);
    d.decode(hex('20')); // size 0: empty the table
    expect(() => d.decode(hex('be'))).toThrow(/past the dynamic table/);
  });

  it('encodes plain literals that decode to the same fields, long values and the never-index bit included', () => {
    const fields = [
      { name: ':path', value: '/runtime.v1.RuntimeService/Version', sensitive: false },
      { name: 'authorization', value: 'Bearer secret', sensitive: true },
      { name: 'x-long', value: 'v'.repeat(300), sensitive: false },
    ];
    const block = encodeHeaderBlock(fields);
    expect(block[0]).toBe(0x00);
    expect(new HpackDecoder(0).decode(block)).toEqual(fields);
  });
});
