#!/usr/bin/env node
// The CLI lives in TypeScript (src/cli); this shim runs its compiled form.
require("../dist/src/cli/main.js")
  .main(process.argv.slice(2))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      console.error(`grok: ${err && err.message ? err.message : err}`);
      process.exitCode = 1;
    },
  );
