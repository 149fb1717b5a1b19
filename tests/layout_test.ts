/**
 * The source tree's shape: no import cycle between files, and no two folders of `src/` importing each other
 * (the config toolkit is the bottom every area reads with; `src/app/` is the top that assembles them).
 */

import assert from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url).pathname;

async function sourceFiles(dir: string, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}${e.name}`;
    if (e.isDirectory) await sourceFiles(`${p}/`, out);
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Relative imports of each file (static `import`/`export ... from` and dynamic `import("...")`). */
async function importGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const file of await sourceFiles(SRC)) {
    // Code only: JSDoc examples import modules too.
    const text = (await Deno.readTextFile(file)).replace(/\/\*[\s\S]*?\*\//g, "");
    const deps: string[] = [];
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g)) {
      deps.push(new URL(m[1], `file://${file}`).pathname);
    }
    graph.set(file, deps);
  }
  return graph;
}

Deno.test("layout: no two folders of src/ import each other", async () => {
  const graph = await importGraph();
  const folder = (p: string) => p.slice(SRC.length).split("/")[0];
  const edges = new Set<string>();
  for (const [file, deps] of graph) {
    for (const d of deps) if (folder(d) !== folder(file)) edges.add(`${folder(file)} -> ${folder(d)}`);
  }
  const loops = [...edges].filter((e) => {
    const [a, b] = e.split(" -> ");
    return edges.has(`${b} -> ${a}`);
  });
  assert.deepEqual(loops, []);
});

Deno.test("layout: no import cycle between files of src/", async () => {
  const graph = await importGraph();
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => p.slice(SRC.length)).join(" -> "));
      return;
    }
    state.set(f, "open");
    for (const d of graph.get(f) ?? []) visit(d, [...path, f]);
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f, []);
  assert.deepEqual(cycles, []);
});
