#!/usr/bin/env node
// Entry point for `npx warren`: runs the compiled CLI (built by `npm install` / `npm run build`).
import '../dist/main.js';
