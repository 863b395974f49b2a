/* The citizen pages' one script: the device key (WebCrypto, non-extractable, kept in IndexedDB), RFC 9421
   signed requests exactly as ecard/kit/signing.py verifies them, the page session, the code and its refresh,
   and the one handler every form uses. Plain ES2017, no framework. */
(function () {
  "use strict";

  var DB = "ecard-h5";
  var STORE = "device";
  var ALG = { name: "ECDSA", namedCurve: "P-256" };
  var SIGN = { name: "ECDSA", hash: "SHA-256" };
  var MESSAGES = {
    ticket_invalid: "链接已使用或已过期，请回到渠道App重新打开。",
    pin_incorrect: "支付密码不正确。",
    pin_locked: "密码错误次数过多，已锁定30分钟。",
    card_suspended: "电子社保卡已挂失或暂停使用。",
    card_cancelled: "电子社保卡已注销。",
    client_disabled: "本设备已不再持有电子社保卡，请重新领取。",
    insufficient_funds: "账户余额不足。",
    bill_not_payable: "该账单不能支付。",
    number_mismatch: "数字不一致，已拒绝登录。",
    card_status_conflict: "电子社保卡已是挂失状态。",
    too_many_requests: "操作过于频繁，请稍后再试。",
    invalid_request: "填写的内容有误，请检查。",
    identity_mismatch: "姓名与身份证号不一致。",
    cardholder_not_found: "未找到该人员的社保卡。"
  };

  function status(text) {
    var region = document.getElementById("status");
    if (region) { region.textContent = text; }
  }

  function refusal(answer, problem) {
    var code = problem && problem.code;
    return MESSAGES[code] || ("操作未成功" + (code ? "（" + code + "）" : "（" + answer.status + "）"));
  }

  // --- IndexedDB: the device record (the CryptoKey object itself, never its bytes) ---------------------------
  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB, 1);
      request.onupgradeneeded = function () { request.result.createObjectStore(STORE); };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function idb(mode, act) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var request = act(db.transaction(STORE, mode).objectStore(STORE));
        request.onsuccess = function () { resolve(request.result); };
        request.onerror = function () { reject(request.error); };
      });
    });
  }

  function loadDevice() { return idb("readonly", function (s) { return s.get("current"); }); }
  function saveDevice(record) { return idb("readwrite", function (s) { return s.put(record, "current"); }); }

  // --- RFC 9421 ---------------------------------------------------------------------------------------------
  function b64(bytes) {
    var text = "";
    var view = new Uint8Array(bytes);
    for (var i = 0; i < view.length; i++) { text += String.fromCharCode(view[i]); }
    return btoa(text);
  }

  function b64u(bytes) { return b64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""); }

  async function signedFetch(device, method, target, body, accept) {
    var raw = body === undefined ? "" : JSON.stringify(body);
    var at = target.indexOf("?");
    var path = at < 0 ? target : target.slice(0, at);
    var query = at < 0 ? "" : target.slice(at + 1);
    var names = ['"@method"', '"@path"', '"@query"'];
    var lines = ['"@method": ' + method, '"@path": ' + path, '"@query": ?' + query];
    var headers = {};
    var bytes = new TextEncoder().encode(raw);
    if (raw) {
      var digest = "sha-256=:" + b64(await crypto.subtle.digest("SHA-256", bytes)) + ":";
      names.push('"content-digest"');
      lines.push('"content-digest": ' + digest);
      headers["Content-Digest"] = digest;
      headers["Content-Type"] = "application/json";
    }
    var nonce = b64u(crypto.getRandomValues(new Uint8Array(16)));
    var params = "(" + names.join(" ") + ");created=" + Math.floor(Date.now() / 1000) + ';keyid="' +
      device.keyId + '";alg="ecdsa-p256-sha256";nonce="' + nonce + '"';
    lines.push('"@signature-params": ' + params);
    var signature = await crypto.subtle.sign(SIGN, device.privateKey, new TextEncoder().encode(lines.join("\n")));
    headers["Signature-Input"] = "sig1=" + params;
    headers.Signature = "sig1=:" + b64(signature) + ":";
    if (accept) { headers.Accept = accept; }
    return fetch(target, { method: method, headers: headers, body: raw ? bytes : undefined, credentials: "same-origin" });
  }

  async function problemOf(answer) {
    try { return await answer.json(); } catch (e) { return null; }
  }

  // --- enrolment with a ticket, and the page session --------------------------------------------------------
  async function enrol(ticket) {
    var pair = await crypto.subtle.generateKey(ALG, false, ["sign"]);
    var jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
    var answer = await fetch("/v1/enrolments/ticketed", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        ticket: ticket,
        device_public_key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
        device_name: "H5"
      })
    });
    if (answer.status !== 201) { throw new Error(refusal(answer, await problemOf(answer))); }
    var made = await answer.json();
    var record = { privateKey: pair.privateKey, keyId: made.device_key_id, deviceId: made.device_id, cardId: made.card_id };
    await saveDevice(record);
    return record;
  }

  async function openSession(device) {
    // a session opened moments ago and the shell again: the browser keeps no cookie here (a cross-site frame),
    // and reloading would only go round in circles
    var opened = Number(sessionStorage.getItem("ecard-h5-opened") || 0);
    if (Date.now() - opened < 10000) { throw new Error("浏览器未保存登录状态，请在渠道App中直接打开本页。"); }
    var answer = await signedFetch(device, "POST", "/h5/session");
    if (answer.status !== 204) { throw new Error(refusal(answer, await problemOf(answer))); }
    sessionStorage.setItem("ecard-h5-opened", String(Date.now()));
    location.replace(location.search.indexOf("signed_out") >= 0 ? "/h5/" : location.pathname + location.search);
  }

  async function bootstrap() {
    var ticket = new URLSearchParams(location.hash.slice(1)).get("ticket");
    // the ticket leaves the address bar (and the history) before anything else happens
    if (ticket) { history.replaceState(null, "", location.pathname); }
    try {
      var device = ticket ? await enrol(ticket) : await loadDevice();
      if (!device) {
        var opening = document.getElementById("opening");
        if (opening) { opening.hidden = true; }
        document.getElementById("no-key").hidden = false;
        return;
      }
      await openSession(device);
    } catch (error) {
      status(error.message);
    }
  }

  // --- the dynamic code -------------------------------------------------------------------------------------
  function blobAsDataUrl(blob) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsDataURL(blob);
    });
  }

  async function showCode(device) {
    var answer = await signedFetch(device, "POST", "/v1/codes", {}, "image/png");
    var image = document.getElementById("qr");
    if (answer.status !== 201) {
      image.alt = "无法生成二维码";
      status(refusal(answer, await problemOf(answer)));
      return;
    }
    var expires = Date.parse(answer.headers.get("Ecard-Code-Expires"));
    image.src = await blobAsDataUrl(await answer.blob());
    image.alt = "电子社保卡二维码";
    image.dataset.expires = String(expires);
    var left = expires - Date.now();
    document.getElementById("qr-expires").textContent = "二维码将在 " + new Date(expires).toLocaleTimeString("zh-CN") + " 前自动更新";
    // a new code before the old one runs out, as the API's refresh_after (three quarters of its life)
    setTimeout(function () { showCode(device); }, Math.max(1000, left * 0.75));
  }

  async function showNumeric(device) {
    var answer = await signedFetch(device, "POST", "/v1/codes", { form: "numeric" });
    var target = document.getElementById("numeric");
    if (answer.status !== 201) { status(refusal(answer, await problemOf(answer))); return; }
    var made = await answer.json();
    target.textContent = made.code.replace(/(\d{4})(?=\d)/g, "$1 ");
  }

  // --- the one form handler ---------------------------------------------------------------------------------
  function fields(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name) { return; }
      if (field.type === "checkbox") { body[field.name] = field.checked; return; }
      if (field.value === "" && field.hasAttribute("data-optional")) { return; }
      body[field.name] = field.dataset.type === "int" ? parseInt(field.value, 10) : field.value;
    });
    return body;
  }

  async function submit(device, form) {
    var method = form.dataset.method;
    var body = method === "GET" || method === "DELETE" ? undefined : fields(form);
    status("正在提交……");
    var answer = await signedFetch(device, method, form.dataset.path, body);
    if (answer.status >= 300) { status(refusal(answer, await problemOf(answer))); return; }
    var made = answer.status === 204 ? {} : await answer.json();
    var done = form.dataset.done;
    if (done === "reload") { location.reload(); return; }
    if (done === "show") {
      var result = form.querySelector("[data-result]");
      Array.prototype.forEach.call(result.querySelectorAll("[data-field]"), function (slot) {
        slot.textContent = made[slot.dataset.field] || "";
      });
      result.hidden = false;
      form.reset();
      status("已提交。");
      return;
    }
    status(form.dataset.message || "已完成。");
  }

  // --- large text, remembered (not a secret) ----------------------------------------------------------------
  function largeText() {
    var button = document.getElementById("large-text");
    var apply = function (on) {
      document.documentElement.classList.toggle("large", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
    };
    apply(localStorage.getItem("ecard-h5-large") === "1");
    button.addEventListener("click", function () {
      var on = button.getAttribute("aria-pressed") !== "true";
      localStorage.setItem("ecard-h5-large", on ? "1" : "0");
      apply(on);
    });
  }

  async function start() {
    largeText();
    var page = document.body.dataset.page;
    var resume = document.getElementById("resume");
    if (resume) {
      resume.addEventListener("click", function () {
        loadDevice().then(function (device) { return device ? openSession(device) : bootstrap(); })
          .catch(function (error) { status(error.message); });
      });
      return;
    }
    if (page === "shell") { await bootstrap(); return; }
    sessionStorage.removeItem("ecard-h5-opened");
    var device = await loadDevice();
    if (!device || device.deviceId !== document.body.dataset.device) {
      status("本设备的电子社保卡已更换，请回到渠道App重新打开。");
      return;
    }
    document.getElementById("logout").addEventListener("click", function () {
      fetch("/h5/logout", { method: "POST", credentials: "same-origin" }).then(function () {
        location.replace("/h5/?signed_out=true");
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("form[data-method]"), function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        submit(device, form).catch(function (error) { status("网络错误：" + error.message); });
      });
    });
    if (page === "home") {
      document.getElementById("show-numeric").addEventListener("click", function () {
        showNumeric(device).catch(function (error) { status(error.message); });
      });
      await showCode(device);
    }
  }

  start().catch(function (error) { status(error.message); });
}());
