// Bundles the dashboard (dashboard/main.ts with the SDK and uPlot; dashboard/dashboard.css
// with uPlot's stylesheet) into the server's assets, which are committed so that
// `make run` serves the page without Node. `--check` builds in memory and exits 1
// when the committed files differ (the staleness test runs it).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ASSETS = join(ROOT, "..", "..", "src", "aurigraph_stream", "dashboard", "assets");
const check = process.argv.includes("--check");
// --outdir DIR: build into (or, with --check, compare with) DIR instead of the assets.
const at = process.argv.indexOf("--outdir");
const OUT = at > 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1] : ASSETS;

const result = await esbuild.build({
  absWorkingDir: ROOT,
  entryPoints: [
    { in: "dashboard/main.ts", out: "dashboard" },
    { in: "dashboard/dashboard.css", out: "dashboard" },
  ],
  outdir: OUT,
  bundle: true,
  format: "esm",
  minify: true,
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
  write: false,
});

const stale = [];
for (const file of result.outputFiles) {
  if (check) {
    let current = null;
    try {
      current = readFileSync(file.path);
    } catch {
      current = null;
    }
    if (current === null || !Buffer.from(file.contents).equals(current)) stale.push(relative(OUT, file.path));
  } else {
    mkdirSync(dirname(file.path), { recursive: true });
    writeFileSync(file.path, file.contents);
  }
}
if (stale.length) {
  console.error(`stale, run \`make dashboard\`: ${stale.join(", ")}`);
  process.exit(1);
}
