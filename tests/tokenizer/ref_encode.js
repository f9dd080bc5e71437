// ref_encode.js — the independent reference: @lenml/tokenizers (a JavaScript
// port of Hugging Face tokenizers) loading the real tokenizer.json.
//
//   node ref_encode.js MODEL_DIR [--no-special] < corpus.jsonl > ids.jsonl
//   node ref_encode.js MODEL_DIR --bench FILE   (encode FILE's lines, print MB/s)
//
// Input: one JSON string per line. Output: one JSON array of ids per line.
// BOS follows the reference rule (Rust tokenizers + add_bos_token when
// special tokens are requested); the JS post-processor does not add it.
'use strict';
const fs = require('fs');
const path = require('path');

function findModule() {
  const here = path.resolve(__dirname, '..', '..', '.cache', 'npm', 'node_modules', '@lenml', 'tokenizers');
  for (const p of [process.env.MS_NPM_TOKENIZERS, here]) {
    if (p && fs.existsSync(path.join(p, 'package.json'))) return p;
  }
  console.error('ref_encode.js: @lenml/tokenizers not found in ' + here + ' (run scripts/setup.sh)');
  process.exit(2);
}

const args = process.argv.slice(2);
const dir = args[0];
if (!dir) { console.error('usage: node ref_encode.js MODEL_DIR [--no-special] [--bench FILE]'); process.exit(2); }
const noSpecial = args.includes('--no-special');
const benchIdx = args.indexOf('--bench');

const { TokenizerLoader } = require(findModule());
const tjson = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
const tcfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: tjson, tokenizerConfig: tcfg });
const bosText = typeof tcfg.bos_token === 'string' ? tcfg.bos_token : tcfg.bos_token && tcfg.bos_token.content;
const bosId = tjson.added_tokens.find((t) => t.content === bosText).id;

function encode(text) {
  const ids = tok.encode(text, { add_special_tokens: false });
  return !noSpecial && tcfg.add_bos_token ? [bosId].concat(ids) : ids;
}

if (benchIdx >= 0) {
  const lines = fs.readFileSync(args[benchIdx + 1], 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
  const bytes = lines.reduce((a, l) => a + Buffer.byteLength(l, 'utf8'), 0);
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (const l of lines) n += tok.encode(l, { add_special_tokens: false }).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ impl: 'js', bytes, tokens: n, seconds: s, mb_per_s: bytes / 1e6 / s }));
  process.exit(0);
}

const input = fs.readFileSync(0, 'utf8').split('\n');
const out = [];
for (const line of input) {
  if (!line.length) continue;
  out.push(JSON.stringify(encode(JSON.parse(line))));
}
process.stdout.write(out.join('\n') + '\n');
