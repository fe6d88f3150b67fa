// Builds polyvisor's web console into internal/webui/dist (embedded by
// internal/webui/webui.go and served at /ui/): app.js and app.css, one
// minified file each (xterm's CSS included), and index.html copied from
// src/. Run from anywhere: `node web/build.mjs` or `npm run build --prefix web`.
// The output is reproducible (no timestamps, no hashes of the build
// machine); everything else in dist/ is removed but .gitkeep.
import { build } from "esbuild";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, "..", "internal", "webui", "dist");
const keep = new Set([".gitkeep"]);

await mkdir(dist, { recursive: true });
for (const name of await readdir(dist)) {
  if (!keep.has(name)) await rm(join(dist, name), { recursive: true, force: true });
}

const result = await build({
  absWorkingDir: web,
  entryPoints: ["src/main.ts"],
  outfile: join(dist, "app.js"),
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2021", "chrome100", "firefox100", "safari15"],
  legalComments: "eof",
  charset: "utf8",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
});
await copyFile(join(web, "src", "index.html"), join(dist, "index.html"));

const outputs = Object.entries(result.metafile.outputs)
  .map(([file, o]) => `${file.replace(/^.*\/dist\//, "dist/")} ${(o.bytes / 1024).toFixed(1)} KiB`);
console.log(["dist/index.html", ...outputs].join("\n"));
