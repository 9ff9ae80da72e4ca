// The operator's dashboard in a headless Chromium tab, signed in with the API token, collecting
// every script error and every console error (what the Content-Security-Policy refuses included).
import type { Browser, Page } from 'playwright-core';

export async function openDashboardTab(
  browser: Browser,
  apiUrl: string,
  token: string,
): Promise<{ tab: Page; errors: string[] }> {
  const tab = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  tab.on('pageerror', (err) => errors.push(err.message));
  tab.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  await tab.goto(`${apiUrl}/#token=${token}`);
  return { tab, errors };
}
