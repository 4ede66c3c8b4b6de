// Content hashes of run configurations: equal configs hash equally however their keys were ordered.

import { createHash } from "node:crypto";

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * JSON with object keys sorted recursively and no whitespace. Keys whose value is undefined are
 * dropped (as JSON.stringify does); anything JSON cannot represent faithfully is rejected rather than
 * silently altered: functions, symbols, bigints, NaN/±Infinity, undefined in arrays, non-plain objects
 * (Map, Date, class instances) and cycles.
 */
export function canonicalJson(value: unknown): string {
  const ancestors = new Set<object>();
  const fail = (at: string, problem: string): never => {
    throw new Error(`canonicalJson: ${problem} at ${at}`);
  };
  const encode = (v: unknown, at: string): string => {
    if (v === null) return "null";
    switch (typeof v) {
      case "boolean":
        return v ? "true" : "false";
      case "string":
        return JSON.stringify(v);
      case "number":
        return Number.isFinite(v) ? JSON.stringify(v) : fail(at, `${v} is not representable in JSON`);
      case "object":
        break;
      default:
        return fail(at, `${typeof v} values are not representable in JSON`);
    }
    const obj = v as object;
    if (ancestors.has(obj)) fail(at, "circular reference");
    ancestors.add(obj);
    let text: string;
    if (Array.isArray(obj)) {
      // Array.from visits holes (as undefined, rejected) where map would skip them
      text = `[${Array.from(obj, (item, i) => encode(item, `${at}[${i}]`)).join(",")}]`;
    } else if (isPlainObject(obj)) {
      const record = obj as Record<string, unknown>;
      const members = Object.keys(record)
        .sort()
        .filter((key) => record[key] !== undefined)
        .map((key) => `${JSON.stringify(key)}:${encode(record[key], `${at}.${key}`)}`);
      text = `{${members.join(",")}}`;
    } else {
      text = fail(at, `a ${obj.constructor?.name ?? "non-plain"} object is not a plain JSON object`);
    }
    ancestors.delete(obj);
    return text;
  };
  return encode(value, "$");
}

/** First 12 hex digits of the SHA-256 of `canonicalJson(value)`: a short, stable config id. */
export function configHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value), "utf8").digest("hex").slice(0, 12);
}
