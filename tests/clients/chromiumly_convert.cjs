// Runs chromiumly (npm, a Gotenberg client nobody here wrote) against a worker's Gotenberg route.
// Usage: node chromiumly_convert.cjs <plan.json>; plan = {endpoint, cases: [{name, files, options, out}]}.
// Each case's answer body is written to `out`; one JSON line per case on stdout: {name, ok, bytes | error}.
"use strict";
const fs = require("fs");
const { Chromiumly, LibreOffice } = require("chromiumly");

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  Chromiumly.configure({ endpoint: plan.endpoint });
  for (const c of plan.cases) {
    try {
      const buffer = await LibreOffice.convert({ files: c.files, ...c.options });
      fs.writeFileSync(c.out, buffer);
      console.log(JSON.stringify({ name: c.name, ok: true, bytes: buffer.length }));
    } catch (err) {
      console.log(JSON.stringify({ name: c.name, ok: false, error: String(err && err.message) }));
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
