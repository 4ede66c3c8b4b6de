// The metrics table as CSV (RFC 4180 quoting). Numbers are written in their shortest round-trip form,
// so what is read back is bit-for-bit what was logged, NaN and ±Infinity included.

const NUMBER_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
/** Also accepts the spellings of other writers (e.g. Python's "nan", "inf"). */
const NAN_PATTERN = /^[+-]?nan$/i;
const INFINITY_PATTERN = /^([+-]?)inf(inity)?$/i;

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (Object.is(value, -0)) return "-0"; // String(-0) is "0", which would lose the sign
  return String(value); // shortest round-trip form; "Infinity" / "-Infinity" for the infinities
}

function quoteIfNeeded(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * One header line and one line per row, in `columns` order; a row's missing values are left empty
 * and its keys outside `columns` are not written.
 */
export function formatCsv(columns: string[], rows: Array<Record<string, number | string>>): string {
  const lines = [columns.map(quoteIfNeeded).join(",")];
  for (const row of rows) {
    const cells = columns.map((column) => {
      const value: number | string | undefined = row[column];
      if (value === undefined) return "";
      return typeof value === "number" ? formatNumber(value) : quoteIfNeeded(value);
    });
    lines.push(cells.join(","));
  }
  return lines.join("\n") + "\n";
}

/** A record's fields and the 1-based line it starts on. */
interface CsvRecord {
  fields: string[];
  line: number;
}

function splitRecords(text: string, source: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1;
  let recordLine = 1;
  let recordStart = 0;
  let i = 0;
  const endRecord = () => {
    fields.push(field);
    records.push({ fields, line: recordLine });
    fields = [];
    field = "";
  };
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"' && field === "") {
      const quoteLine = line;
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`${source}: line ${quoteLine}: unterminated quoted field`);
        if (text[i] === '"') {
          if (text[i + 1] !== '"') break;
          field += '"';
          i += 2;
          continue;
        }
        if (text[i] === "\n") line++;
        field += text[i++];
      }
      i++; // closing quote
      const next = text[i];
      if (next !== undefined && next !== "," && next !== "\n" && next !== "\r") {
        throw new Error(`${source}: line ${line}: unexpected text after a closing quote`);
      }
    } else if (ch === ",") {
      fields.push(field);
      field = "";
      i++;
    } else if (ch === "\n" || ch === "\r") {
      endRecord();
      i += ch === "\r" && text[i + 1] === "\n" ? 2 : 1;
      line++;
      recordLine = line;
      recordStart = i;
    } else {
      field += ch;
      i++;
    }
  }
  // A final line without a newline still ends a record.
  if (recordStart < text.length) endRecord();
  return records;
}

function parseNumber(text: string): number | undefined {
  if (text === "") return NaN;
  if (NUMBER_PATTERN.test(text)) return Number(text);
  if (NAN_PATTERN.test(text)) return NaN;
  const infinity = INFINITY_PATTERN.exec(text);
  if (infinity) return infinity[1] === "-" ? -Infinity : Infinity;
  return undefined;
}

/**
 * Parses a metrics table: every value is numeric, empty values read as NaN. Errors name `source` and
 * the line: a row with the wrong number of fields, a value that is not a number.
 */
export function parseCsv(
  text: string,
  source = "metrics.csv",
): { columns: string[]; rows: Array<Record<string, number>> } {
  const records = splitRecords(text, source);
  if (records.length === 0) return { columns: [], rows: [] };
  const columns = records[0].fields;
  const seen = new Set<string>();
  for (const column of columns) {
    if (seen.has(column)) throw new Error(`${source}: line 1: duplicate column "${column}"`);
    seen.add(column);
  }
  const rows = records.slice(1).map(({ fields, line }) => {
    if (fields.length !== columns.length) {
      throw new Error(`${source}: line ${line}: expected ${columns.length} fields, found ${fields.length}`);
    }
    const row: Record<string, number> = {};
    columns.forEach((column, j) => {
      const value = parseNumber(fields[j]);
      if (value === undefined) {
        throw new Error(`${source}: line ${line}: column "${column}" holds ${JSON.stringify(fields[j])}, not a number`);
      }
      row[column] = value;
    });
    return row;
  });
  return { columns, rows };
}
