// Builds the GraphiQL bundle that apidocs serves at /q/assets/graphiql/, so that `make run`
// serves GraphiQL without Node: the output is committed, and a test rebuilds it and compares.
//
//   node scripts/graphiql/build.mjs [OUTDIR]   (default: src/aurigraph_stream/apidocs/assets/graphiql)
//
// Writes graphiql.js, graphiql.css and LICENSES.txt: every npm package in the bundle, its
// version, its licence and the text of its licence file.
import { build } from "esbuild";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const outdir = resolve(process.argv[2] ?? join(root, "src/aurigraph_stream/apidocs/assets/graphiql"));
mkdirSync(outdir, { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { graphiql: "scripts/graphiql/main.js" },
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outdir,
  legalComments: "none", // the licences, whole, are in LICENSES.txt
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  metafile: true,
  logLevel: "warning",
});

// The packages whose files went into the bundle, from the build's own record of its inputs.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g);
  if (!match) continue;
  const path = join(root, input.slice(0, input.lastIndexOf(match.at(-1)) + match.at(-1).length));
  packages.set(path, true);
}
const entries = [];
for (const dir of [...packages.keys()].sort()) {
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name));
  const text = file && existsSync(join(dir, file)) ? readFileSync(join(dir, file), "utf8").trim() : "";
  entries.push(`${meta.name}@${meta.version}\nLicense: ${meta.license}\n\n${text || "(no licence file)"}\n`);
}
writeFileSync(
  join(outdir, "LICENSES.txt"),
  `GraphiQL bundle (graphiql.js, graphiql.css): the npm packages it contains.\n\n` +
    entries.join(`\n${"-".repeat(78)}\n\n`),
);
