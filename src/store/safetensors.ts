// Checkpoints in the safetensors format (huggingface.co/docs/safetensors), so they load directly in
// Python (`safetensors.numpy.load_file`) and other tools:
//   [u64 little-endian N][N bytes of UTF-8 JSON header, space-padded][raw little-endian tensor data]
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
// the start of the data section) and may hold "__metadata__": a string-to-string map.
//
// Checkpoints also record the SHA-256 of each tensor's data block in the metadata ("sha256.<name>"), so a
// flipped bit is caught on load (in Python: hashlib.sha256(array.tobytes()).hexdigest()). Files without
// checksums, such as checkpoints written before they existed, still load.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { NamedTensors, sizeOf, Tensor32 } from "../util/tensors";
import { writeFileAtomic } from "./atomic";

const METADATA_KEY = "__metadata__";
const HEADER_LENGTH_BYTES = 8;
/** The header is padded so the data section starts 8-byte aligned, as the reference writer does. */
const HEADER_ALIGNMENT = 8;
const F32_BYTES = 4;
/** Metadata key of a tensor's checksum: "sha256.<tensor name>" → hex SHA-256 of its data block. */
const CHECKSUM_PREFIX = "sha256.";

const hostIsLittleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

interface HeaderEntry {
  dtype: "F32";
  shape: number[];
  data_offsets: [number, number];
}

function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/** Serializes `tensors` (in map order) and optional string metadata to safetensors bytes. */
export function encodeSafetensors(tensors: NamedTensors, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, HeaderEntry | Record<string, string>> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string")
        throw new Error(`safetensors metadata "${key}" must be a string, got ${typeof value}`);
    }
    header[METADATA_KEY] = metadata;
  }
  let dataBytes = 0;
  for (const [name, tensor] of tensors) {
    if (name === METADATA_KEY) throw new Error(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (!isValidShape(tensor.shape)) throw new Error(`tensor "${name}" has invalid shape [${tensor.shape}]`);
    const count = sizeOf(tensor.shape);
    if (tensor.data.length !== count) {
      throw new Error(`tensor "${name}" of shape [${tensor.shape}] needs ${count} values, has ${tensor.data.length}`);
    }
    const begin = dataBytes;
    dataBytes += count * F32_BYTES;
    header[name] = { dtype: "F32", shape: [...tensor.shape], data_offsets: [begin, dataBytes] };
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = Math.ceil(json.length / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;
  const out = new Uint8Array(HEADER_LENGTH_BYTES + headerBytes + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes), true);
  out.set(json, HEADER_LENGTH_BYTES);
  out.fill(0x20, HEADER_LENGTH_BYTES + json.length, HEADER_LENGTH_BYTES + headerBytes);

  let offset = HEADER_LENGTH_BYTES + headerBytes;
  for (const tensor of tensors.values()) {
    out.set(littleEndianBytes(tensor.data), offset);
    offset += tensor.data.length * F32_BYTES;
  }
  return out;
}

/** The bytes of `values` as the file holds them: a view on a little-endian host, a copy elsewhere. */
function littleEndianBytes(values: Float32Array): Uint8Array {
  if (hostIsLittleEndian) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * F32_BYTES, values[i], true);
  return out;
}

function blockChecksum(block: Uint8Array): string {
  return createHash("sha256").update(block).digest("hex");
}

/** Copies into a fresh Float32Array, which is aligned whatever the alignment of `bytes`. */
function readFloat32LE(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const values = new Float32Array(count);
  if (hostIsLittleEndian) {
    new Uint8Array(values.buffer).set(bytes.subarray(offset, offset + count * F32_BYTES));
    return values;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, count * F32_BYTES);
  for (let i = 0; i < count; i++) values[i] = view.getFloat32(i * F32_BYTES, true);
  return values;
}

function describe(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/** A tensor's place in the data section, as the header gives it. */
interface TensorEntry {
  name: string;
  shape: number[];
  begin: number;
  end: number;
}

type Fail = (problem: string) => never;

/**
 * Parses and validates safetensors bytes, and verifies the tensors' checksums when the metadata has them;
 * `source` (e.g. the file path) names the input in errors. Tensors come back in the order of their data
 * offsets; the metadata without the checksums.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source = "checkpoint",
): { tensors: NamedTensors; metadata: Record<string, string> } {
  const fail: Fail = (problem) => {
    throw new Error(`${source}: invalid safetensors file: ${problem}`);
  };

  if (bytes.length < HEADER_LENGTH_BYTES) {
    fail(`file is ${bytes.length} bytes, shorter than the ${HEADER_LENGTH_BYTES}-byte header length`);
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  const available = bytes.length - HEADER_LENGTH_BYTES;
  if (headerLength > BigInt(available)) {
    fail(`header length ${headerLength} exceeds the ${available} bytes after the length field`);
  }
  const dataStart = HEADER_LENGTH_BYTES + Number(headerLength);
  const dataLength = bytes.length - dataStart;

  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(HEADER_LENGTH_BYTES, dataStart));
    header = JSON.parse(text);
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }

  const { metadata, entries } = readHeader(header as Record<string, unknown>, dataLength, fail);
  checkTiling(entries, dataLength, fail);
  verifyChecksums(metadata, entries, bytes.subarray(dataStart), fail);

  const tensors: NamedTensors = new Map();
  for (const { name, shape, begin, end } of entries) {
    const tensor: Tensor32 = {
      shape: [...shape],
      data: readFloat32LE(bytes, dataStart + begin, (end - begin) / F32_BYTES),
    };
    tensors.set(name, tensor);
  }
  return { tensors, metadata };
}

/** The header's metadata and tensor entries, each entry checked against its dtype, shape and the data size. */
function readHeader(
  header: Record<string, unknown>,
  dataLength: number,
  fail: Fail,
): { metadata: Record<string, string>; entries: TensorEntry[] } {
  const metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) fail(`${METADATA_KEY} is not an object`);
      for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof value !== "string") fail(`${METADATA_KEY} entry "${key}" is not a string`);
        metadata[key] = value;
      }
      continue;
    }
    if (typeof entry !== "object" || entry === null) fail(`tensor "${name}" has no description object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (dtype !== "F32") fail(`tensor "${name}" has dtype ${describe(dtype)}; only F32 is supported`);
    if (!isValidShape(shape)) fail(`tensor "${name}" has invalid shape ${describe(shape)}`);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(`tensor "${name}" has invalid data_offsets ${describe(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const expectedBytes = sizeOf(shape) * F32_BYTES;
    if (end - begin !== expectedBytes) {
      fail(
        `tensor "${name}" of shape [${shape}] needs ${expectedBytes} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    if (end > dataLength) {
      fail(`tensor "${name}" data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data section`);
    }
    entries.push({ name, shape, begin, end });
  }
  return { metadata, entries };
}

/** The data section must be tiled exactly: no overlaps, no gaps, nothing after the last tensor. Sorts `entries`. */
function checkTiling(entries: TensorEntry[], dataLength: number, fail: Fail): void {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous = "the start of the data section";
  for (const entry of entries) {
    if (entry.begin < covered) fail(`tensor "${entry.name}" overlaps ${previous}`);
    if (entry.begin > covered)
      fail(`${entry.begin - covered} unused bytes between ${previous} and tensor "${entry.name}"`);
    covered = entry.end;
    previous = `tensor "${entry.name}"`;
  }
  if (covered !== dataLength) fail(`${dataLength - covered} trailing bytes after ${previous}`);
}

/**
 * Checks each tensor's bytes against its checksum in the metadata, then removes the checksums from it: all
 * tensors have one or none does (files written before checksums have none).
 */
function verifyChecksums(metadata: Record<string, string>, entries: TensorEntry[], data: Uint8Array, fail: Fail): void {
  const checksums = Object.keys(metadata).filter((key) => key.startsWith(CHECKSUM_PREFIX));
  if (checksums.length === 0) return;
  const names = new Set(entries.map((e) => e.name));
  for (const key of checksums) {
    if (!names.has(key.slice(CHECKSUM_PREFIX.length))) fail(`checksum ${key} names no tensor`);
  }
  for (const { name, begin, end } of entries) {
    const expected = metadata[CHECKSUM_PREFIX + name];
    if (expected === undefined) fail(`tensor "${name}" has no checksum, though others do`);
    if (blockChecksum(data.subarray(begin, end)) !== expected) {
      fail(`tensor "${name}" does not match its checksum (its data is corrupt)`);
    }
  }
  for (const key of checksums) delete metadata[key];
}

/**
 * Writes a checkpoint atomically, so a crash never leaves a torn checkpoint under `path`, with each
 * tensor's checksum in the metadata.
 */
export function writeCheckpoint(path: string, tensors: NamedTensors, metadata: Record<string, string> = {}): void {
  const withChecksums = { ...metadata };
  for (const [name, tensor] of tensors)
    withChecksums[CHECKSUM_PREFIX + name] = blockChecksum(littleEndianBytes(tensor.data));
  writeFileAtomic(path, encodeSafetensors(tensors, withChecksums));
}

/** Reads a checkpoint, verifying its checksums (see decodeSafetensors); `source` names it in errors. */
export function readCheckpoint(
  path: string,
  source = path,
): { tensors: NamedTensors; metadata: Record<string, string> } {
  return decodeSafetensors(fs.readFileSync(path), source);
}
