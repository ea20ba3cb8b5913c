// Evaluates one flag of a flagd flag file with the real flagd evaluator
// (@openfeature/flagd-core, the in-process logic every flagd provider uses) for N
// targeting keys, and prints one JSON line: how many keys got the value `true`, the
// share in percent, and the counts per variant and per reason. The file is loaded with
// strict schema validation, so a file flagd would reject makes this script fail.
//
// Usage: node evaluate.mjs FLAG_FILE FLAG_KEY [N=4000]
// Used by tests/it/flagd.rs; install once with `npm install` in this folder.
import { readFileSync } from "node:fs";
import { FlagdCore } from "@openfeature/flagd-core";

const [file, flagKey, countArgument] = process.argv.slice(2);
if (!file || !flagKey) {
  console.error("usage: node evaluate.mjs FLAG_FILE FLAG_KEY [N=4000]");
  process.exit(2);
}
const keyCount = Number(countArgument ?? 4000);

const core = new FlagdCore();
// The second argument turns on strict validation against flagd's JSON schema.
core.setConfigurations(readFileSync(file, "utf8"), true);

let onCount = 0;
const variants = {};
const reasons = {};
const errors = {};
for (let index = 0; index < keyCount; index++) {
  // The caller's default is `false`: what the application runs when flagd has no answer.
  const resolution = core.resolveBooleanEvaluation(flagKey, false, {
    targetingKey: `user-${index}`,
  });
  if (resolution.value === true) onCount++;
  const variant = resolution.variant ?? "(none)";
  variants[variant] = (variants[variant] ?? 0) + 1;
  reasons[resolution.reason] = (reasons[resolution.reason] ?? 0) + 1;
  if (resolution.errorCode) errors[resolution.errorCode] = (errors[resolution.errorCode] ?? 0) + 1;
}

console.log(
  JSON.stringify({
    keys: keyCount,
    on: onCount,
    on_percent: (100 * onCount) / keyCount,
    variants,
    reasons,
    errors,
  }),
);
