// Compact PNGs for notebooks: Chromium's screenshots are truecolour, but a plot has few colours (a white
// background, a handful of trace colours, their anti-aliased edges), so a palette PNG of the same picture
// is two to three times smaller. Above 256 colours the 256 most frequent are kept and every other colour
// (an edge pixel, mostly) becomes its nearest one: the plot looks the same.
import * as zlib from "node:zlib";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Chunk {
  type: string;
  data: Buffer;
}

function readChunks(png: Buffer): Chunk[] {
  if (png.length < 8 || !png.subarray(0, 8).equals(SIGNATURE)) throw new Error("not a PNG (bad signature)");
  const chunks: Chunk[] = [];
  for (let at = 8; at + 12 <= png.length;) {
    const length = png.readUInt32BE(at);
    chunks.push({ type: png.toString("latin1", at + 4, at + 8), data: png.subarray(at + 8, at + 8 + length) });
    at += 12 + length;
  }
  return chunks;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

export interface PngPixels {
  width: number;
  height: number;
  /** Row by row, each pixel's colour as 0xRRGGBB. */
  pixels: Uint32Array;
  /** No pixel is (even partly) transparent. */
  opaque: boolean;
}

/** The pixels of an 8-bit, non-interlaced RGB, RGBA or palette PNG (Chromium writes RGB, compactPng
 * palette), or null for any other kind of PNG. Throws on what is not a PNG. */
export function pngPixels(png: Buffer): PngPixels | null {
  const chunks = readChunks(png);
  const header = chunks.find((c) => c.type === "IHDR")?.data;
  if (!header) throw new Error("not a PNG (no IHDR chunk)");
  const [width, height] = [header.readUInt32BE(0), header.readUInt32BE(4)];
  const [depth, colorType, interlace] = [header[8], header[9], header[12]];
  const channels = ({ 2: 3, 6: 4, 3: 1 } as Record<number, number>)[colorType!] ?? 0;
  if (depth !== 8 || channels === 0 || interlace !== 0) return null;
  const palette = chunks.find((c) => c.type === "PLTE")?.data ?? Buffer.alloc(0);
  const raw = zlib.inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data)));
  const stride = width * channels;
  const prev = new Uint8Array(stride);
  const line = new Uint8Array(stride);
  const pixels = new Uint32Array(width * height);
  let opaque = !chunks.some((c) => c.type === "tRNS");
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    // Undo the row's filter (PNG spec, section 9): each byte predicted from left (a), up (b), up-left (c).
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? line[x - channels]! : 0;
      const b = prev[x]!;
      const c = x >= channels ? prev[x - channels]! : 0;
      let predicted = 0;
      if (filter === 1) predicted = a;
      else if (filter === 2) predicted = b;
      else if (filter === 3) predicted = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[x] = (row[x]! + predicted) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      const i = x * channels;
      if (channels === 1) pixels[y * width + x] = palette.readUIntBE(line[i]! * 3, 3);
      else pixels[y * width + x] = (line[i]! << 16) | (line[i + 1]! << 8) | line[i + 2]!;
      if (channels === 4 && line[i + 3] !== 255) opaque = false;
    }
    prev.set(line);
  }
  return { width, height, pixels, opaque };
}

/** An 8-bit palette PNG of the same picture (see the top of this file); a PNG that pngPixels cannot read,
 * or with transparent pixels, comes back unchanged. */
export function compactPng(png: Buffer): Buffer {
  const image = pngPixels(png);
  if (!image || !image.opaque) return png;
  const counts = new Map<number, number>();
  for (const p of image.pixels) counts.set(p, (counts.get(p) ?? 0) + 1);
  const palette = [...counts.entries()]
    .sort((x, y) => y[1] - x[1])
    .slice(0, 256)
    .map(([colour]) => colour);
  const indexOf = new Map(palette.map((colour, i) => [colour, i]));
  const nearest = (colour: number): number => {
    let best = 0;
    let bestDistance = Infinity;
    palette.forEach((p, i) => {
      const dr = (p >> 16) - (colour >> 16);
      const dg = ((p >> 8) & 0xff) - ((colour >> 8) & 0xff);
      const db = (p & 0xff) - (colour & 0xff);
      const distance = dr * dr + dg * dg + db * db;
      if (distance < bestDistance) [best, bestDistance] = [i, distance];
    });
    indexOf.set(colour, best);
    return best;
  };
  const { width, height, pixels } = image;
  // Each row: filter byte 0 (none, best for palette images), then one palette index per pixel.
  const raw = Buffer.alloc(height * (width + 1));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const colour = pixels[y * width + x]!;
      raw[y * (width + 1) + 1 + x] = indexOf.get(colour) ?? nearest(colour);
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 3; // colour type: palette
  const plte = Buffer.alloc(palette.length * 3);
  palette.forEach((colour, i) => plte.writeUIntBE(colour, i * 3, 3));
  return Buffer.concat([
    SIGNATURE,
    chunk("IHDR", header),
    chunk("PLTE", plte),
    chunk("IDAT", zlib.deflateSync(raw, { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
