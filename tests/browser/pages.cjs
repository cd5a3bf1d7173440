// Opens each page given on the command line in Debian's Chromium (headless, through
// playwright-core; never a browser download), waits until the page says it is done
// (window.signalsDone) and until every beacon it sent was answered, and prints what each page
// saw as one JSON object: {url: {results: window.signalResults, beacons: [{status, body}]}}.
//   node tests/browser/pages.cjs URL...
// playwright-core is found through NODE_PATH (scripts/browser.env installs it).
const { chromium } = require('playwright-core');

async function visit(browser, url) {
  const page = await browser.newPage();
  const beacons = [];
  const answered = [];
  page.on('request', (request) => {
    if (request.resourceType() === 'ping') beacons.push(request);
  });
  page.on('response', (response) => {
    const request = response.request();
    if (request.resourceType() === 'ping') {
      answered.push({ status: response.status(), body: request.postData() });
    }
  });
  page.on('requestfailed', (request) => {
    if (request.resourceType() === 'ping') {
      answered.push({ failed: request.failure() && request.failure().errorText, body: request.postData() });
    }
  });
  await page.goto(url);
  await page.waitForFunction(() => window.signalsDone === true, null, { timeout: 20000 });
  const deadline = Date.now() + 20000;
  while (answered.length < beacons.length && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const results = await page.evaluate(() => window.signalResults);
  await page.close();
  return { results, beacons: answered };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    const seen = {};
    for (const url of process.argv.slice(2)) seen[url] = await visit(browser, url);
    process.stdout.write(JSON.stringify(seen));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
