// Drives the chat page in headless Chromium (Debian's, through playwright-core) against a
// running `logattn serve`, like a person would: types, sends with Enter, regenerates, forks,
// edits, reloads, sends a message the server refuses, then one after the server is gone.
// Prints what it saw as one JSON object for test_chat_page.py to check.
//   node chat_page.cjs URL SERVER_PID OUT_DIR
const { chromium } = require("playwright-core");

const [url, serverPid, outDir] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  const out = {};

  const assistants = () => page.locator(".message.assistant").allTextContents();
  // Every action of the page sets <body data-busy="1"> until it is done.
  const settled = () => page.waitForFunction(() => document.body.dataset.busy === "0");
  async function say(text) {
    await page.fill("#input", text);
    await page.press("#input", "Enter");
    await settled();
  }
  async function click(selector) {
    await page.click(selector);
    await settled();
  }

  await page.goto(url);
  await settled();
  // Seeded sampling, 40 tokens.
  await page.click("summary");
  await page.fill("#temperature", "0.7");
  await page.fill("#max_tokens", "40");
  await page.fill("#seed", "1");
  await click("#new");
  // Shift+Enter is a new line, Enter sends.
  await page.fill("#input", "ROMEO:");
  await page.press("#input", "Shift+Enter");
  out.shift_enter_kept = (await page.inputValue("#input")).includes("\n");
  await say("ROMEO:");
  out.conversation = await page.evaluate(() => localStorage.getItem("logattn.conversation"));
  out.first = (await assistants()).at(-1);
  out.stats = await page.textContent("#stats");
  await page.screenshot({ path: `${outDir}/chat.png` });

  await click("#regenerate");
  out.regenerated = (await assistants()).at(-1);
  out.turns_after_regenerate = (await assistants()).length;

  await click("#fork");
  out.fork = await page.evaluate(() => localStorage.getItem("logattn.conversation"));
  out.fork_messages = await assistants();
  out.listed = await page.locator("#conversations li").count();

  await click("#edit");
  out.edit_input = await page.inputValue("#input");
  await say("JULIET:");
  out.edited = (await assistants()).at(-1);

  // Rename the open conversation (a prompt dialog), delete the first (a confirm dialog).
  page.once("dialog", (d) => d.accept("Romeo"));
  await page.locator("#conversations li.active button", { hasText: "Rename" }).click();
  await page.waitForFunction(() => [...document.querySelectorAll("#conversations li span")]
    .some((s) => s.textContent === "Romeo"));
  page.once("dialog", (d) => d.accept());
  await page.locator("#conversations li:not(.active) button", { hasText: "Delete" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#conversations li").length === 1);

  await page.reload();
  await settled();
  out.titles = await page.locator("#conversations li span").allTextContents();
  out.after_reload = await page.evaluate(() => localStorage.getItem("logattn.conversation"));
  out.reload_messages = await assistants();
  out.errors_before_refusal = [...consoleErrors];

  // A message over the server's prompt limit: refused, and the page says why.
  await say("x".repeat(400));
  out.refusal = await page.locator(".message.error").last().textContent();

  // A narrow screen: the conversations above, the composer still there.
  await page.setViewportSize({ width: 380, height: 740 });
  const aside = await page.locator("aside").boundingBox();
  const form = await page.locator("#composer").boundingBox();
  out.narrow = { aside_above: aside.y + aside.height <= form.y, composer_visible: form.y + form.height <= 740 + 1 };
  await page.screenshot({ path: `${outDir}/chat-narrow.png` });

  // The server goes away.
  process.kill(Number(serverPid), "SIGKILL");
  await new Promise((r) => setTimeout(r, 300));
  await page.setViewportSize({ width: 1100, height: 720 });
  await say("anyone there?");
  out.gone = await page.locator(".message.error").last().textContent();
  out.console_errors = consoleErrors;
  await browser.close();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
