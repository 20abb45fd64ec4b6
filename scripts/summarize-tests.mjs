#!/usr/bin/env node
// Reads vitest's JSON report and prints the closing line CI looks for:
// "N passed, N failed[, N skipped]". A test file that failed to load counts as a failure, and so
// does each failed pre-test check (typecheck, lint) passed as the second argument.
import { existsSync, readFileSync } from 'node:fs';

const [reportPath, checksFailedArg] = process.argv.slice(2);
const checksFailed = Number(checksFailedArg ?? 0);
let passed = 0;
let failed = checksFailed;
let skipped = 0;
if (!reportPath || !existsSync(reportPath)) {
  console.log('no test report was written (vitest did not run to the end)');
  failed += 1;
} else {
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));
  passed = report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // A file whose tests never ran (an import error, a failing beforeAll) has no failed test.
  for (const file of report.testResults ?? []) {
    const ran = (file.assertionResults ?? []).some((t) => t.status === 'failed');
    if (file.status === 'failed' && !ran) {
      console.log(`failed to run: ${file.name}: ${(file.message ?? '').split('\n')[0]}`);
      failed += 1;
    }
  }
  if (passed + failed + skipped === 0) {
    console.log('no tests ran');
    failed += 1;
  }
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
