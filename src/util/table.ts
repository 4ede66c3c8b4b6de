// Aligned plain-text tables: `grok ls`, `grok sweep`, `grok bench --all` and the notebooks' comparison tables.

export interface TableOptions {
  /** Columns padded on the left (numbers); the others are padded on the right. */
  rightAligned?: readonly boolean[];
  /** A line of dashes under the header. */
  rule?: boolean;
}

/** The header and rows as lines: columns two spaces apart, each as wide as its widest cell, no trailing spaces. */
export function formatTable(header: string[], rows: string[][], options: TableOptions = {}): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (options.rightAligned?.[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  const rule = options.rule ? [line(widths.map((w) => "-".repeat(w)))] : [];
  return [line(header), ...rule, ...rows.map(line)];
}
