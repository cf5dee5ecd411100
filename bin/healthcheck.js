#!/usr/bin/env node
// The container's HEALTHCHECK: GET /healthz from the API at the address pgferry binds, PGFERRY_HTTP
// read at each check (so a port set at `docker run` is followed). Exit 0 healthy, 1 not. node:http
// rather than fetch, which refuses some ports (6000, 6665-6669, ...) that pgferry may bind.
import http from 'node:http';
import { localUrl, parseHttpAddress } from '../dist/src/http/address.js';

const text = process.env.PGFERRY_HTTP;
const addr = text ? parseHttpAddress(text) : null;
if (!addr) {
  process.stderr.write(`PGFERRY_HTTP is ${text ? `"${text}", not HOST:PORT` : 'not set'}: no API to check\n`);
  process.exit(1);
}
const url = `${localUrl(addr)}/healthz`;
http
  .get(url, { timeout: 2_500 }, (res) => {
    res.resume();
    if (res.statusCode === 200) process.exit(0);
    process.stderr.write(`${url}: HTTP ${res.statusCode}\n`);
    process.exit(1);
  })
  .on('timeout', function () {
    this.destroy(new Error('no answer in 2.5 s'));
  })
  .on('error', (err) => {
    process.stderr.write(`${url}: ${err.code ?? err.message}\n`);
    process.exit(1);
  });
