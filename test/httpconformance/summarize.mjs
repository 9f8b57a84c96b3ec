// summarize.mjs SUITE_DIR RESULTS_JSON: counts the suite's results the way
// its result pages classify them. A test whose depends_on tests did not
// pass is a dependency failure (counted in neither pass nor fail); a setup
// error is a setup failure. Kinds: required (no kind), optimal (the
// "optional" tests) and check (informational, yes or no).
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [suiteDir, resultsFile] = process.argv.slice(2)
if (!suiteDir || !resultsFile) {
  console.error('usage: node summarize.mjs SUITE_DIR RESULTS_JSON')
  process.exit(2)
}
const load = async f => (await import(pathToFileURL(path.join(suiteDir, 'tests', f)).href)).default
const suites = await load('index.mjs')
suites.push(await load('surrogate-control.mjs'))
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const tests = new Map()
for (const suite of suites) {
  for (const t of suite.tests) {
    if (t.browser_only === true) continue
    tests.set(t.id, t)
  }
}

// outcome: 'pass', 'fail', 'setup', 'dependency' or 'untested'.
const memo = new Map()
function outcome (id) {
  if (memo.has(id)) return memo.get(id)
  const t = tests.get(id)
  const r = results[id]
  let o
  if (r === undefined) {
    o = 'untested'
  } else if ((t.depends_on || []).some(d => outcome(d) !== 'pass')) {
    o = 'dependency'
  } else if (r === true) {
    o = 'pass'
  } else if (Array.isArray(r) && r[0] === 'Setup') {
    o = 'setup'
  } else {
    o = 'fail'
  }
  memo.set(id, o)
  return o
}

const counts = {}
const lists = {}
for (const [id, t] of tests) {
  const kind = t.kind || 'required'
  const o = outcome(id)
  counts[kind] ??= { total: 0, pass: 0, fail: 0, setup: 0, dependency: 0, untested: 0 }
  counts[kind].total++
  counts[kind][o]++
  if (o !== 'pass') {
    const key = `${kind} ${o}`
    lists[key] ??= []
    const r = results[id]
    lists[key].push(`${id}${Array.isArray(r) ? ': ' + r[1] : ''}`)
  }
}

for (const key of Object.keys(lists).sort()) {
  console.log(`== ${key} (${lists[key].length})`)
  for (const line of lists[key].sort()) console.log(`  ${line}`)
}
const c = k => counts[k] || { total: 0, pass: 0, fail: 0, setup: 0, dependency: 0, untested: 0 }
const req = c('required')
const opt = c('optimal')
const chk = c('check')
console.log('')
console.log(`required: ${req.pass} pass / ${req.fail} fail of ${req.total} (setup failures ${req.setup}, dependency failures ${req.dependency}, untested ${req.untested})`)
console.log(`optional: ${opt.pass} pass of ${opt.total} (fail ${opt.fail}, setup ${opt.setup}, dependency ${opt.dependency}, untested ${opt.untested})`)
console.log(`check:    ${chk.pass} yes of ${chk.total}`)
