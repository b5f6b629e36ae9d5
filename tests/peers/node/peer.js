// A Node `ws` client that misbehaves on cue, for tests/peers.rs.
//
//   node peer.js URL SCENARIO [ARG]
//
// Prints one line `result k=v ...` before exiting (what it saw), or is killed by the test.
// Where `ws` refuses to do something wrong (invalid close codes, oversized or non-UTF-8
// reasons) the frame is written by hand to its socket.
'use strict';
const crypto = require('crypto');
const WebSocket = require('ws');

const [url, scenario, arg] = process.argv.slice(2);

function closeFrame(payload) {
  const n = payload.length;
  const head = n <= 125 ? Buffer.from([0x88, 0x80 | n]) : Buffer.from([0x88, 0x80 | 126, n >> 8, n & 0xff]);
  const key = crypto.randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
  return Buffer.concat([head, key, body]);
}

function codeAnd(reason) {
  const b = Buffer.alloc(2);
  return (code) => {
    b.writeUInt16BE(code);
    return Buffer.concat([b, Buffer.from(reason)]);
  };
}

function stopReading(ws) {
  ws._socket.removeAllListeners('data');
  ws._socket.pause();
}

if (scenario === 'expect-refusal') {
  // The upgrade is expected to be refused: print the HTTP status received.
  const probe = new WebSocket(url);
  probe.on('unexpected-response', (_req, res) => {
    console.log(`result status=${res.statusCode}`);
    process.exit(0);
  });
  probe.on('open', () => {
    console.log('result status=101');
    process.exit(0);
  });
  probe.on('error', () => {});
  return;
}

const ws = new WebSocket(url, { maxPayload: 0 });
let echoes = 0;
let closeCode = 'none';
ws.on('message', () => { echoes += 1; });
ws.on('error', () => {});
ws.on('close', (code) => {
  closeCode = code;
  console.log(scenario === 'flood' ? `result echoes=${echoes} close_code=${closeCode}` : `result close_code=${closeCode}`);
  process.exit(0);
});
ws.on('open', () => {
  switch (scenario) {
    case 'close-no-answer':
      ws.send('!close');
      stopReading(ws);
      setTimeout(() => {}, 30000);
      break;
    case 'close-then-silent':
      ws._socket.write(closeFrame(codeAnd('bye')(1000)));
      stopReading(ws);
      setTimeout(() => {}, 30000);
      break;
    case 'reset':
    case 'eof':
      ws.send('ping');
      ws.once('message', () => {
        if (scenario === 'reset') {
          ws._socket.resetAndDestroy();
          console.log('result reset=1');
          process.exit(0);
        }
        ws._socket.end();
      });
      break;
    case 'close-code':
      ws._socket.write(closeFrame(codeAnd('')(Number(arg))));
      break;
    case 'reason-124':
      ws._socket.write(closeFrame(codeAnd('r'.repeat(124))(1000)));
      break;
    case 'reason-123':
      ws.close(1000, 'r'.repeat(123));
      break;
    case 'non-utf8-reason':
      ws._socket.write(closeFrame(Buffer.concat([codeAnd('ok')(1000), Buffer.from([0xff, 0xfe])])));
      break;
    case 'flood':
      for (let i = 0; i < Number(arg); i++) ws.send(`m${i}`);
      ws.close(1000, 'flood done');
      break;
    case 'slow-reader':
      ws.send('!flood');
      stopReading(ws);
      setTimeout(() => {}, 30000);
      break;
    default:
      console.error(`unknown scenario ${scenario}`);
      process.exit(2);
  }
});
setTimeout(() => { console.log(`result close_code=${closeCode} timeout=1`); process.exit(0); }, 20000);
