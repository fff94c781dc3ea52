/**
 * Draws docs/performance.svg (guarded/bare per runtime and measure, with the floor/bare of the same
 * run as a mark on each bar) and writes
 * docs/performance-results.md (the table) from .bench-out/http-results.json, the HTTP bench's own
 * output. Run by `npm run bench:http` after bench/http/run-http.ts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../shared/paths.ts";

const root = ROOT;
interface Measures {
  small?: number;
  download?: number;
  upload?: number;
}
const data = JSON.parse(readFileSync(join(root, ".bench-out/http-results.json"), "utf8")) as {
  date: string;
  node: string;
  quick: boolean;
  results: Record<
    string,
    { bare: Measures; guarded: Measures; floor?: Measures; ratio: Measures; floorRatio?: Measures }
  >;
};

const measures = ["small", "download", "upload"] as const;
const colors: Record<(typeof measures)[number], string> = { small: "#4e79a7", download: "#59a14f", upload: "#f28e2b" };
const runtimes = Object.keys(data.results);
const barWidth = 26;
const groupGap = 36;
const chartHeight = 260;
const left = 60;
const top = 50;
const groupWidth = measures.length * barWidth + groupGap;
const width = Math.max(left + runtimes.length * groupWidth + 40, left + 740);
const height = top + chartHeight + 90;
const maxRatio = 1.2;
const y = (ratio: number) => top + chartHeight - (Math.min(ratio, maxRatio) / maxRatio) * chartHeight;

const parts: string[] = [];
parts.push(
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="system-ui, sans-serif" font-size="12">`,
);
parts.push(`<rect width="100%" height="100%" fill="white"/>`);
parts.push(
  `<text x="${left}" y="22" font-size="15" font-weight="bold">stream-deadlines over HTTP: guarded / bare (1.0 = free)</text>`,
);
parts.push(
  `<text x="${left}" y="38" fill="#555">${data.date.slice(0, 10)}, node ${data.node}${data.quick ? " (quick run: not comparable)" : ""}; npm run bench:http</text>`,
);
for (const tick of [0, 0.25, 0.5, 0.75, 1, 1.2]) {
  parts.push(
    `<line x1="${left}" x2="${width - 20}" y1="${y(tick)}" y2="${y(tick)}" stroke="${tick === 1 ? "#333" : "#ddd"}" ${tick === 1 ? 'stroke-dasharray="4 3"' : ""}/>`,
  );
  parts.push(`<text x="${left - 8}" y="${y(tick) + 4}" text-anchor="end" fill="#555">${tick.toFixed(2)}</text>`);
}
runtimes.forEach((runtime, i) => {
  const x0 = left + 10 + i * groupWidth;
  measures.forEach((measure, j) => {
    const ratio = data.results[runtime]!.ratio[measure];
    if (ratio === undefined) return;
    const floor = data.results[runtime]!.floorRatio?.[measure];
    const x = x0 + j * barWidth;
    parts.push(
      `<rect x="${x}" y="${y(ratio)}" width="${barWidth - 4}" height="${top + chartHeight - y(ratio)}" fill="${colors[measure]}"><title>${runtime} ${measure}: ${ratio.toFixed(3)}</title></rect>`,
    );
    parts.push(
      `<text x="${x + (barWidth - 4) / 2}" y="${y(Math.max(ratio, floor ?? 0)) - 4}" text-anchor="middle" font-size="10">${ratio.toFixed(2)}</text>`,
    );
    // The floor of the same measure (what any wrapper on WHATWG streams pays), as a black mark.
    if (floor !== undefined) {
      parts.push(
        `<line x1="${x - 2}" x2="${x + barWidth - 2}" y1="${y(floor)}" y2="${y(floor)}" stroke="black" stroke-width="2.5"><title>${runtime} ${measure} floor: ${floor.toFixed(3)}</title></line>`,
      );
    }
  });
  parts.push(
    `<text x="${x0 + (measures.length * barWidth) / 2}" y="${top + chartHeight + 18}" text-anchor="middle">${runtime}</text>`,
  );
});
measures.forEach((measure, j) => {
  const x = left + j * 130;
  parts.push(`<rect x="${x}" y="${height - 30}" width="12" height="12" fill="${colors[measure]}"/>`);
  parts.push(
    `<text x="${x + 18}" y="${height - 20}">${measure === "small" ? "small requests/s" : `${measure} bytes/s`}</text>`,
  );
});
parts.push(
  `<line x1="${left + 390}" x2="${left + 412}" y1="${height - 24}" y2="${height - 24}" stroke="black" stroke-width="2.5"/>`,
);
parts.push(`<text x="${left + 418}" y="${height - 20}">floor: one more stream (or body read), no deadlines</text>`);
parts.push("</svg>");
writeFileSync(join(root, "docs/performance.svg"), `${parts.join("\n")}\n`);

const MiB = 1024 * 1024;
const fmt = (measure: string, value: number | undefined) =>
  value === undefined ? "" : measure === "small" ? `${value.toFixed(0)} req/s` : `${(value / MiB).toFixed(0)} MiB/s`;
const rows = runtimes.flatMap((runtime) =>
  measures
    .filter((m) => data.results[runtime]!.ratio[m] !== undefined)
    .map((m) => {
      const r = data.results[runtime]!;
      return `| ${runtime} | ${m} | ${fmt(m, r.bare[m])} | ${fmt(m, r.guarded[m])} | ${r.ratio[m]!.toFixed(3)} | ${fmt(m, r.floor?.[m])} | ${r.floorRatio?.[m]?.toFixed(3) ?? ""} |`;
    }),
);
writeFileSync(
  join(root, "docs/performance-results.md"),
  [
    "# HTTP bench results",
    "",
    `Written by \`npm run bench:http\` on ${data.date.slice(0, 10)} (node ${data.node}${data.quick ? ", quick run" : ""}). Method: docs/performance.md.`,
    "",
    "| runtime | measure | bare | guarded | ratio guarded/bare | floor | ratio floor/bare |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    "![guarded / bare per runtime](performance.svg)",
    "",
  ].join("\n"),
);
console.log("wrote docs/performance.svg and docs/performance-results.md");
