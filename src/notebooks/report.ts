// The "paper vs. ours" table each notebook ends with: for each claim, the paper's number, ours and a
// verdict. A cell computes it from the runs and displays it as markdown, so that no number in a notebook's
// prose is typed by hand.
import { showMarkdown } from "../plot/display";
import { formatTable } from "../util/table";

export const VERDICTS = ["reproduced", "partly", "not"] as const;
export type Verdict = (typeof VERDICTS)[number];

/** One claim. The numbers are strings, formatted by the caller (e.g. `${(acc * 100).toFixed(1)}%`). */
export interface ComparisonRow {
  claim: string;
  paper: string;
  ours: string;
  verdict: Verdict;
  note?: string;
}

const COLUMNS = ["claim", "paper", "ours", "verdict", "note"] as const;

/** The rows' cells, checked: the verdict must be one of VERDICTS and every cell text. The note column is
 * there only when a row has a note. */
function tableCells(rows: ComparisonRow[]): { header: string[]; body: string[][] } {
  if (rows.length === 0) throw new Error("comparison table: no rows");
  const withNote = rows.some((r) => r.note !== undefined);
  const header = withNote ? [...COLUMNS] : COLUMNS.slice(0, 4);
  const body = rows.map((row, i) => {
    const where = `comparison table row ${i + 1}`;
    if (!(VERDICTS as readonly unknown[]).includes(row.verdict)) {
      throw new Error(`${where}: verdict must be one of ${VERDICTS.join(", ")} (got ${JSON.stringify(row.verdict)})`);
    }
    return header.map((column) => {
      const cell = row[column] ?? "";
      if (typeof cell !== "string") {
        throw new Error(`${where}: ${column} must be a string (format numbers in the cell), got ${typeof cell}`);
      }
      return cell.replace(/\s*\n\s*/g, " ");
    });
  });
  return { header, body };
}

/** The table as markdown and as plain text with aligned columns. */
export function comparisonTable(rows: ComparisonRow[]): { markdown: string; plain: string } {
  const { header, body } = tableCells(rows);
  const markdownRow = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`;
  const markdown = [markdownRow(header), markdownRow(header.map(() => "---")), ...body.map(markdownRow)].join("\n");
  const plain = formatTable(header, body, { rule: true }).join("\n");
  return { markdown, plain };
}

/** Shows the table in the notebook: markdown, with the plain-text table as its text/plain copy. */
export function showComparisonTable(rows: ComparisonRow[]): void {
  const { markdown, plain } = comparisonTable(rows);
  showMarkdown(markdown, plain);
}
