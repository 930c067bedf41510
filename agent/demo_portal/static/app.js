// The demo portal's page: the whole integration is connect(), login(), signCms()/signPdf().
// What went wrong is shown next to the button that was pressed, as a sentence in the page's
// language (az, tr, ru, en), with the SDK's `kind` in small print for support.
import { connect, ImzaError, Kind, fromBase64 } from "/sdk/imza.js";

const $ = (id) => document.getElementById(id);
let agent = null;

// --- the page's words ------------------------------------------------------------------------
// Embedded rather than fetched: the portal serves only its few static files, and a page
// that cannot say what went wrong until another request succeeds would defeat the purpose.

const LANGUAGES = ["az", "tr", "ru", "en"];

const TEXT = {
  az: {
    languages: "Dil", notLoggedIn: "Daxil olmamısınız", agentLabel: "Bağlantı:", code: "Kod",
    note: "Bu, imza-agent üçün nümayiş portalıdır: burada heç nə real dövlət xidməti deyil. " +
      "Nümayiş şəxsiyyətinin PIN kodu: 0000.",
    loginTitle: "1. Daxil ol",
    loginText: "Tokeninizdəki autentifikasiya sertifikatı ilə daxil olun. Server birdəfəlik " +
      "sorğu verir və imzalanmış cavabı yoxlayır.",
    loginButton: "Elektron imza ilə daxil ol",
    declarationTitle: "2. Bəyannamə",
    declarationText: "Server bəyannaməni formadan tərtib edir; siz onu imza sertifikatınızla " +
      "imzalayırsınız (CAdES) və server imzanı özünün verdiyi sənədə qarşı yoxlayır.",
    year: "İl", income: "Gəlir (AZN)", tax: "Vergi (AZN)", remark: "Qeyd",
    declarationButton: "Bəyannaməni imzala",
    pdfTitle: "3. PDF", pdfText: "PDF sənədini brauzerdə imzalayın (PAdES); sonra portalın serveri imzanı yoxlayır.",
    pdfButton: "PDF-i imzala", download: "İmzalanmış faylı yüklə",
    "busy.login": "Daxil olunur…", "busy.declaration": "Bəyannamə imzalanır…",
    "busy.pdf": "PDF imzalanır…",
    "done.login": "Daxil oldunuz.", "done.declaration": "Bəyannamə imzalandı və qəbul edildi.",
    "done.pdf": "PDF imzalandı: serverin yoxlaması aşağıdadır.",
    serverPdfTitle: "4. Serverdə PDF",
    serverPdfText: "Sənəd serverdən çıxmır: server PDF-i hazırlayır, tokeniniz yalnız onun heşini imzalayır, server isə imzanı tamamlayıb yoxlayır.",
    serverPdfButton: "Serverdə imzala",
    "busy.server-pdf": "PDF serverdə imzalanır…",
    "done.server-pdf": "PDF serverdə imzalandı: yoxlaması aşağıdadır.",
    "verify.title": "Serverin yoxlaması",
    "verify.ok": "İmza etibarlıdır.",
    "verify.bad": "İmza etibarlı DEYİL.",
    "verify.none": "Faylda imza yoxdur.",
    "verify.signer": "İmzalayan",
    "verify.intact": "Sənəd imzalandıqdan sonra dəyişdirilməyib.",
    "verify.broken": "Sənəd imzalandıqdan sonra dəyişdirilib və ya imza zədələnib.",
    "verify.trusted": "Sertifikat bu portalın etibar etdiyi mərkəz tərəfindən verilib.",
    "verify.untrusted": "Sertifikat bu portalın etibar etdiyi mərkəz tərəfindən verilməyib.",
    "verify.level": "Səviyyə",
    "verify.timestamp": "Vaxt möhürü",
    "verify.ltv": "Yoxlama məlumatları (OCSP/CRL) faylın içindədir.",
    "verify.partial": "İmza sənədin hamısını əhatə etmir.",
    "verify.other": "Bu, portalın verdiyi sənəd deyil.",
    NO_EXTENSION: "Bu brauzerdə imza-agent genişlənməsi quraşdırılmayıb.",
    EXTENSION_WITHOUT_AGENT: "imza-agent brauzer genişlənməsi quraşdırılıb, lakin bu " +
      "kompüterdə imza-agent proqramı quraşdırılmayıb və ya işləmir. Onu quraşdırın və ya " +
      "başladın, sonra yenidən cəhd edin.",
    AGENT_NOT_RUNNING: "Bu kompüterdə imza-agent proqramı işləmir (və ya quraşdırılmayıb). " +
      "Onu başladın və ya quraşdırın, sonra yenidən cəhd edin.",
    SITE_REFUSED: "Bu kompüterdəki imza-agent bu saytın elektron imzanızdan istifadə " +
      "etməsinə icazə vermir.",
    USER_CANCELLED: "Siz imtina etdiniz: heç nə imzalanmadı.",
    TIMED_OUT: "Cavab vaxtında gəlmədi. Yenidən cəhd edin.",
    CONNECTION_LOST: "imza-agent ilə əlaqə kəsildi. Yenidən cəhd edin.",
    VERSION_MISMATCH: "imza-agent proqramının bu versiyası bu saytla işləmir: onu yeniləyin.",
    AGENT_TOO_OLD: "Bu kompüterdəki imza-agent proqramı bu sayt üçün köhnədir: onu yeniləyin.",
    PAGE_TOO_OLD: "Bu saytın səhifəsi imza-agent proqramınızdan köhnədir: sayt yenilənməlidir. Bir az sonra yenidən cəhd edin.",
    NO_CERTIFICATE: "Uyğun sertifikat tapılmadı: tokeninizi və ya kartınızı taxın.",
    TOKEN_NOT_PRESENT: "Token və ya kart çıxarılıb.",
    PIN_LOCKED: "PIN kod bloklanıb: onu PUK kodu ilə açın.",
    CERTIFICATE_INVALID: "Sertifikatınız hazırda imza üçün istifadə edilə bilməz (müddəti " +
      "bitib, ləğv edilib və ya etibarlı deyil).",
    BUSY: "Başqa bir sorğu imza-agent pəncərəsində cavabınızı gözləyir.",
    RATE_LIMITED: "Çox sayda sorğu: bir az gözləyin və yenidən cəhd edin.",
    NETWORK: "Vaxt möhürü və ya sertifikat statusu xidmətinə qoşulmaq mümkün olmadı.",
    TOO_LARGE: "Sənəd çox böyükdür.",
    UNSUPPORTED: "Tokeniniz bu növ imzanı dəstəkləmir.",
    PORTAL: "Portal sorğunu tamamlaya bilmədi. Yenidən cəhd edin.",
    OTHER: "imza-agent-də xəta baş verdi. Yenidən cəhd edin.",
  },
  tr: {
    languages: "Dil", notLoggedIn: "Giriş yapılmadı", agentLabel: "Bağlantı:", code: "Kod",
    note: "Bu, imza-agent için bir tanıtım portalıdır: buradaki hiçbir şey gerçek bir devlet " +
      "hizmeti değildir. Tanıtım kimliğinin PIN'i: 0000.",
    loginTitle: "1. Giriş",
    loginText: "Tokeninizdeki kimlik doğrulama sertifikasıyla giriş yapın. Sunucu tek " +
      "kullanımlık bir sınama verir ve imzalı yanıtı doğrular.",
    loginButton: "E-imza ile giriş yap",
    declarationTitle: "2. Beyanname",
    declarationText: "Sunucu beyannameyi formdan oluşturur; siz onu imza sertifikanızla " +
      "imzalarsınız (CAdES) ve sunucu imzayı kendi verdiği belgeye karşı doğrular.",
    year: "Yıl", income: "Gelir (AZN)", tax: "Vergi (AZN)", remark: "Not",
    declarationButton: "Beyannameyi imzala",
    pdfTitle: "3. PDF", pdfText: "Bir PDF'i tarayıcıda imzalayın (PAdES); ardından portalın sunucusu imzayı doğrular.",
    pdfButton: "PDF'i imzala", download: "İmzalı dosyayı indir",
    "busy.login": "Giriş yapılıyor…", "busy.declaration": "Beyanname imzalanıyor…",
    "busy.pdf": "PDF imzalanıyor…",
    "done.login": "Giriş yaptınız.", "done.declaration": "Beyanname imzalandı ve kabul edildi.",
    "done.pdf": "PDF imzalandı: sunucunun doğrulaması aşağıda.",
    serverPdfTitle: "4. Sunucuda PDF",
    serverPdfText: "Belge sunucudan çıkmaz: sunucu PDF'i hazırlar, tokeniniz yalnızca özetini imzalar, sunucu imzayı tamamlar ve doğrular.",
    serverPdfButton: "Sunucuda imzala",
    "busy.server-pdf": "PDF sunucuda imzalanıyor…",
    "done.server-pdf": "PDF sunucuda imzalandı: doğrulaması aşağıda.",
    "verify.title": "Sunucu doğrulaması",
    "verify.ok": "İmza geçerli.",
    "verify.bad": "İmza geçerli DEĞİL.",
    "verify.none": "Dosyada imza yok.",
    "verify.signer": "İmzalayan",
    "verify.intact": "Belge imzalandıktan sonra değiştirilmemiş.",
    "verify.broken": "Belge imzalandıktan sonra değiştirilmiş veya imza bozuk.",
    "verify.trusted": "Sertifika, bu portalın güvendiği bir makam tarafından verilmiş.",
    "verify.untrusted": "Sertifika, bu portalın güvendiği bir makam tarafından verilmemiş.",
    "verify.level": "Seviye",
    "verify.timestamp": "Zaman damgası",
    "verify.ltv": "Doğrulama verileri (OCSP/CRL) dosyanın içinde.",
    "verify.partial": "İmza belgenin tamamını kapsamıyor.",
    "verify.other": "Bu, portalın verdiği belge değil.",
    NO_EXTENSION: "Bu tarayıcıda imza-agent uzantısı yüklü değil.",
    EXTENSION_WITHOUT_AGENT: "imza-agent tarayıcı uzantısı yüklü, ancak bu bilgisayarda " +
      "imza-agent programı yüklü değil veya çalışmıyor. Programı yükleyin veya başlatın, " +
      "sonra tekrar deneyin.",
    AGENT_NOT_RUNNING: "Bu bilgisayarda imza-agent programı çalışmıyor (veya yüklü değil). " +
      "Başlatın veya yükleyin, sonra tekrar deneyin.",
    SITE_REFUSED: "Bu bilgisayardaki imza-agent, bu sitenin e-imzanızı kullanmasına izin " +
      "vermiyor.",
    USER_CANCELLED: "İptal ettiniz: hiçbir şey imzalanmadı.",
    TIMED_OUT: "Zamanında yanıt gelmedi. Tekrar deneyin.",
    CONNECTION_LOST: "imza-agent ile bağlantı koptu. Tekrar deneyin.",
    VERSION_MISMATCH: "imza-agent programının bu sürümü bu siteyle çalışmıyor: güncelleyin.",
    AGENT_TOO_OLD: "Bu bilgisayardaki imza-agent programı bu site için çok eski: lütfen güncelleyin.",
    PAGE_TOO_OLD: "Bu sitenin sayfası imza-agent programınızdan daha eski: sitenin güncellenmesi gerekiyor. Daha sonra tekrar deneyin.",
    NO_CERTIFICATE: "Uygun bir sertifika bulunamadı: tokeninizi veya kartınızı takın.",
    TOKEN_NOT_PRESENT: "Token veya kart çıkarıldı.",
    PIN_LOCKED: "PIN bloke oldu: PUK ile blokeyi kaldırın.",
    CERTIFICATE_INVALID: "Sertifikanız şu anda imza için kullanılamaz (süresi dolmuş, iptal " +
      "edilmiş veya güvenilir değil).",
    BUSY: "Başka bir istek imza-agent penceresinde yanıtınızı bekliyor.",
    RATE_LIMITED: "Çok fazla istek: biraz bekleyip tekrar deneyin.",
    NETWORK: "Zaman damgası veya sertifika durum hizmetine ulaşılamadı.",
    TOO_LARGE: "Belge çok büyük.",
    UNSUPPORTED: "Tokeniniz bu tür imzayı desteklemiyor.",
    PORTAL: "Portal isteği tamamlayamadı. Tekrar deneyin.",
    OTHER: "imza-agent'ta bir hata oluştu. Tekrar deneyin.",
  },
  ru: {
    languages: "Язык", notLoggedIn: "Вы не вошли", agentLabel: "Соединение:", code: "Код",
    note: "Это демонстрационный портал для imza-agent: здесь нет настоящих государственных " +
      "услуг. PIN-код демонстрационной личности: 0000.",
    loginTitle: "1. Вход",
    loginText: "Войдите с сертификатом аутентификации на вашем токене. Сервер выдаёт " +
      "одноразовый запрос и проверяет подписанный ответ.",
    loginButton: "Войти с электронной подписью",
    declarationTitle: "2. Декларация",
    declarationText: "Сервер составляет декларацию по форме; вы подписываете её сертификатом " +
      "подписи (CAdES), а сервер проверяет подпись по выданному им документу.",
    year: "Год", income: "Доход (AZN)", tax: "Налог (AZN)", remark: "Примечание",
    declarationButton: "Подписать декларацию",
    pdfTitle: "3. PDF", pdfText: "Подпишите PDF в браузере (PAdES); затем сервер портала проверит подпись.",
    pdfButton: "Подписать PDF", download: "Скачать подписанный файл",
    "busy.login": "Выполняется вход…", "busy.declaration": "Декларация подписывается…",
    "busy.pdf": "PDF подписывается…",
    "done.login": "Вы вошли.", "done.declaration": "Декларация подписана и принята.",
    "done.pdf": "PDF подписан: проверка сервера ниже.",
    serverPdfTitle: "4. PDF на сервере",
    serverPdfText: "Документ не покидает сервер: сервер готовит PDF, ваш токен подписывает только его хеш, а сервер завершает и проверяет подпись.",
    serverPdfButton: "Подписать на сервере",
    "busy.server-pdf": "PDF подписывается на сервере…",
    "done.server-pdf": "PDF подписан на сервере: проверка ниже.",
    "verify.title": "Проверка сервера",
    "verify.ok": "Подпись действительна.",
    "verify.bad": "Подпись НЕ действительна.",
    "verify.none": "В файле нет подписи.",
    "verify.signer": "Подписант",
    "verify.intact": "Документ не изменялся после подписания.",
    "verify.broken": "Документ изменён после подписания, или подпись повреждена.",
    "verify.trusted": "Сертификат выдан удостоверяющим центром, которому доверяет портал.",
    "verify.untrusted": "Сертификат выдан не тем центром, которому доверяет портал.",
    "verify.level": "Уровень",
    "verify.timestamp": "Метка времени",
    "verify.ltv": "Данные для проверки (OCSP/CRL) включены в файл.",
    "verify.partial": "Подпись охватывает не весь документ.",
    "verify.other": "Это не тот документ, который выдал портал.",
    NO_EXTENSION: "В этом браузере не установлено расширение imza-agent.",
    EXTENSION_WITHOUT_AGENT: "Расширение imza-agent установлено, но программа imza-agent " +
      "на этом компьютере не установлена или не запущена. Установите или запустите её и " +
      "повторите попытку.",
    AGENT_NOT_RUNNING: "Программа imza-agent на этом компьютере не запущена (или не " +
      "установлена). Запустите или установите её и повторите попытку.",
    SITE_REFUSED: "imza-agent на этом компьютере не разрешает этому сайту использовать " +
      "вашу электронную подпись.",
    USER_CANCELLED: "Вы отменили действие: ничего не подписано.",
    TIMED_OUT: "Ответ не получен вовремя. Повторите попытку.",
    CONNECTION_LOST: "Соединение с imza-agent прервалось. Повторите попытку.",
    VERSION_MISMATCH: "Эта версия программы imza-agent не работает с этим сайтом: обновите её.",
    AGENT_TOO_OLD: "Программа imza-agent на этом компьютере слишком старая для этого сайта: обновите её.",
    PAGE_TOO_OLD: "Страница этого сайта старее вашей программы imza-agent: сайт должен быть обновлён. Повторите попытку позже.",
    NO_CERTIFICATE: "Подходящий сертификат не найден: вставьте токен или карту.",
    TOKEN_NOT_PRESENT: "Токен или карта извлечены.",
    PIN_LOCKED: "PIN-код заблокирован: разблокируйте его с помощью PUK-кода.",
    CERTIFICATE_INVALID: "Ваш сертификат сейчас нельзя использовать для подписи (истёк, " +
      "отозван или не является доверенным).",
    BUSY: "Другой запрос ждёт вашего ответа в окне imza-agent.",
    RATE_LIMITED: "Слишком много запросов: подождите немного и повторите попытку.",
    NETWORK: "Не удалось связаться со службой меток времени или проверки статуса сертификата.",
    TOO_LARGE: "Документ слишком большой.",
    UNSUPPORTED: "Ваш токен не поддерживает такой вид подписи.",
    PORTAL: "Портал не смог выполнить запрос. Повторите попытку.",
    OTHER: "В imza-agent произошла ошибка. Повторите попытку.",
  },
  en: {
    languages: "Language", notLoggedIn: "Not logged in", agentLabel: "Connection:",
    code: "Code",
    note: "A demonstration portal for imza-agent: nothing here is a real government " +
      "service. The demo identity's PIN is 0000.",
    loginTitle: "1. Log in",
    loginText: "Log in with the authentication certificate on your token. The server issues " +
      "a single-use challenge and verifies the signed answer.",
    loginButton: "Log in with e-signature",
    declarationTitle: "2. Declaration",
    declarationText: "The server composes the declaration from the form; you sign it with " +
      "your signing certificate (CAdES) and the server verifies the signature against the " +
      "document it issued.",
    year: "Year", income: "Income (AZN)", tax: "Tax (AZN)", remark: "Note",
    declarationButton: "Sign the declaration",
    pdfTitle: "3. PDF", pdfText: "Sign a PDF in the browser (PAdES); the portal's server then checks the signature.",
    pdfButton: "Sign a PDF", download: "Download the signed file",
    "busy.login": "Logging in…", "busy.declaration": "Signing the declaration…",
    "busy.pdf": "Signing the PDF…",
    "done.login": "You are logged in.", "done.declaration": "The declaration was signed and accepted.",
    "done.pdf": "The PDF is signed: the server's check is below.",
    serverPdfTitle: "4. PDF on the server",
    serverPdfText: "The document does not leave the server: the server prepares the PDF, your token signs only its hash, and the server completes and checks the signature.",
    serverPdfButton: "Sign on the server",
    "busy.server-pdf": "Signing the PDF on the server…",
    "done.server-pdf": "The PDF was signed on the server: its check is below.",
    "verify.title": "Server check",
    "verify.ok": "The signature is valid.",
    "verify.bad": "The signature is NOT valid.",
    "verify.none": "The file has no signature.",
    "verify.signer": "Signer",
    "verify.intact": "The document is unchanged since it was signed.",
    "verify.broken": "The document was changed after signing, or the signature is damaged.",
    "verify.trusted": "The certificate is issued by a CA this portal trusts.",
    "verify.untrusted": "The certificate is not issued by a CA this portal trusts.",
    "verify.level": "Level",
    "verify.timestamp": "Time-stamp",
    "verify.ltv": "Validation data (OCSP/CRL) is in the file.",
    "verify.partial": "The signature does not cover the whole document.",
    "verify.other": "This is not the document the portal issued.",
    NO_EXTENSION: "The imza-agent browser extension is not installed in this browser.",
    EXTENSION_WITHOUT_AGENT: "The imza-agent browser extension is installed, but the " +
      "imza-agent program is not installed or not running on this computer. Install or " +
      "start it, then try again.",
    AGENT_NOT_RUNNING: "The imza-agent program is not running on this computer (or is not " +
      "installed). Start or install it, then try again.",
    SITE_REFUSED: "The imza-agent on this computer does not allow this site to use your " +
      "e-signature.",
    USER_CANCELLED: "You cancelled: nothing was signed.",
    TIMED_OUT: "There was no answer in time. Please try again.",
    CONNECTION_LOST: "The connection to the imza-agent was lost. Please try again.",
    VERSION_MISMATCH: "This version of the imza-agent program does not work with this " +
      "site: please update it.",
    AGENT_TOO_OLD: "The imza-agent program on this computer is too old for this site: please update it.",
    PAGE_TOO_OLD: "This site's page is older than your imza-agent program: the site must be updated. Please try again later.",
    NO_CERTIFICATE: "No suitable certificate was found: insert your token or card.",
    TOKEN_NOT_PRESENT: "The token or card was removed.",
    PIN_LOCKED: "The PIN is locked: unblock it with the PUK.",
    CERTIFICATE_INVALID: "Your certificate cannot be used to sign now (expired, revoked or " +
      "not trusted).",
    BUSY: "Another request is waiting for your answer in the imza-agent window.",
    RATE_LIMITED: "Too many requests: wait a moment and try again.",
    NETWORK: "The time-stamp or certificate status service could not be reached.",
    TOO_LARGE: "The document is too large.",
    UNSUPPORTED: "Your token does not support this kind of signature.",
    PORTAL: "The portal could not complete the request. Please try again.",
    OTHER: "Something went wrong in the imza-agent. Please try again.",
  },
};

function pickLanguage() {
  const asked = new URLSearchParams(window.location.search).get("lang");
  if (LANGUAGES.includes(asked)) return asked;
  try {
    const saved = window.localStorage.getItem("imza-demo-lang");
    if (LANGUAGES.includes(saved)) return saved;
  } catch {
    // storage disabled: fall through
  }
  for (const tag of navigator.languages || []) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "az";
}

let language = pickLanguage();
const t = (key) => TEXT[language][key] ?? TEXT.en[key] ?? key;

function applyLanguage() {
  document.documentElement.lang = language;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  $("languages").setAttribute("aria-label", t("languages"));
  for (const button of document.querySelectorAll("#languages button")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === language));
  }
  for (const area of Object.keys(outcomes)) render(area);
  for (const id of Object.keys(verifications)) renderVerification(id);
  showUser(currentUser);
}

function setLanguage(next) {
  if (!LANGUAGES.includes(next) || next === language) return;
  language = next;
  try {
    window.localStorage.setItem("imza-demo-lang", next);
  } catch {
    // storage disabled: the choice lasts for this page
  }
  applyLanguage();
}

// --- what each button's message area shows ---------------------------------------------------

const outcomes = {}; // area ("login" | "declaration" | "pdf" | "server-pdf") -> {state, key, kind}

/** The message key for a failure: the SDK's kind (or the agent's reason it passes
 * through); anything the page has no sentence for gets a general one, never a bare code. */
function failure(error) {
  if (!(error instanceof ImzaError)) return { key: "PORTAL", kind: "PORTAL" };
  const kind = error.kind || error.reason;
  return { key: TEXT.en[kind] ? kind : "OTHER", kind };
}

function render(area) {
  const element = $(`${area}-outcome`);
  const outcome = outcomes[area];
  element.replaceChildren();
  if (!outcome) return;
  element.dataset.outcome = outcome.state;
  if (outcome.kind) element.dataset.kind = outcome.kind;
  else delete element.dataset.kind;
  const sentence = document.createElement("span");
  sentence.className = "message";
  sentence.textContent = t(outcome.key);
  element.append(sentence);
  if (outcome.state === "error") {
    // The code, for support: small, after the sentence.
    const code = document.createElement("small");
    code.className = "code";
    code.textContent = ` (${t("code")}: ${outcome.kind})`;
    element.append(code);
  }
}

function show(area, outcome) {
  outcomes[area] = outcome;
  render(area);
}

function showError(area, error) {
  const { key, kind } = failure(error);
  show(area, { state: "error", key, kind });
  // For scripts: the last failure's reason (tests/e2e/browser.mjs waits on it).
  $("error").textContent = `${kind}`;
  $("error").dataset.reason = error instanceof ImzaError ? error.reason : "PORTAL";
  $("error").dataset.kind = kind;
  if (!(error instanceof ImzaError)) console.error(error);
}

function busy(area) {
  show(area, { state: "busy", key: `busy.${area}`, kind: null });
  $("error").textContent = "";
  delete $("error").dataset.reason;
  delete $("error").dataset.kind;
}

// --- the server's check of a signed PDF -------------------------------------------------------

const verifications = {}; // element id -> the server's verification report

/** The server validated the signed PDF (pyHanko, against its own trusted CAs): say what it
 * found, in the page's language. `data-verified` is for scripts. */
function renderVerification(id) {
  const element = $(id);
  const verification = verifications[id];
  element.replaceChildren();
  if (!verification) {
    delete element.dataset.verified;
    return;
  }
  element.dataset.verified = verification.ok ? "valid" : "invalid";
  const heading = document.createElement("strong");
  heading.textContent = t("verify.title");
  const list = document.createElement("ul");
  const line = (text, good) => {
    const item = document.createElement("li");
    item.textContent = text;
    if (good !== undefined) item.dataset.good = good ? "yes" : "no";
    list.append(item);
  };
  if (!verification.signatures.length) line(t("verify.none"), false);
  if (!verification.sameDocument) line(t("verify.other"), false);
  for (const s of verification.signatures) {
    const good = s.ok && s.whole_document;
    line(t(good ? "verify.ok" : "verify.bad"), good);
    line(`${t("verify.signer")}: ${s.signer}`);
    line(t(s.intact && s.valid ? "verify.intact" : "verify.broken"), s.intact && s.valid);
    line(t(s.trusted ? "verify.trusted" : "verify.untrusted"), s.trusted);
    if (!s.whole_document) line(t("verify.partial"), false);
    line(`${t("verify.level")}: PAdES-${s.level}`);
    if (s.timestamp) line(`${t("verify.timestamp")}: ${s.timestamp}`);
    if (s.revocation_checked) line(t("verify.ltv"), true);
  }
  element.append(heading, list);
}

function showVerification(id, verification) {
  verifications[id] = verification;
  renderVerification(id);
}

// --- the portal --------------------------------------------------------------------------------

async function api(path, body = {}) {
  const response = await fetch(path, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" }, credentials: "same-origin" });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function getAgent() {
  if (agent && !agent.closed) return agent;
  // ?wss=…&ws=… point the demo at an agent on other ports (tests, development). `imza-agent
  // demo` passes ?ws= only when the agent serves plain ws:// (`ws_enabled = true`, a
  // development setting): only then does the page opt in to it.
  const query = new URLSearchParams(window.location.search);
  const options = {};
  if (query.get("wss")) options.wssUrl = query.get("wss");
  if (query.get("ws")) {
    options.wsUrl = query.get("ws");
    options.allowInsecureWs = true;
  }
  agent = await connect(options);
  $("transport").textContent = agent.transport;
  $("transport").dataset.transport = agent.transport;
  agent.addEventListener("close", () => { $("transport").textContent = "—"; });
  return agent;
}

let currentUser = null;

function showUser(user) {
  currentUser = user;
  $("user").textContent = user ? `${user.name} (${user.serialNumber})` : t("notLoggedIn");
  $("user").dataset.loggedIn = user ? "yes" : "no";
}

async function login() {
  const a = await getAgent();
  const { challenge } = await api("/api/login/challenge");
  const { token } = await a.login(challenge);
  const { user } = await api("/api/login", { challenge, token });
  showUser(user);
}

async function signDeclaration() {
  const form = Object.fromEntries(new FormData($("declaration")));
  // The server composes the declaration and keeps it; the page gets its digest and text.
  const doc = await api("/api/declaration/prepare", { form });
  const a = await getAgent();
  const chosen = await a.selectCertificate({ purpose: "sign",
    filter: { keyUsage: ["nonRepudiation"] } });
  // CAdES (detached CMS) over the server's digest: the document itself stays on the server.
  const params = { handle: chosen.handle, hash: doc.hash, hashAlgorithm: doc.hashAlgorithm,
    level: doc.level, display: { text: doc.text, documentName: "beyanname.txt" } };
  if (doc.tsaUrl) params.tsaUrl = doc.tsaUrl;
  const { cms } = await a.signCms(params);
  // The server verifies the CMS against the document it issued (once) and its trusted CAs.
  const verdict = await api("/api/declaration/submit", { documentId: doc.documentId, cms });
  // The server's verification record, as it reported it (not translated: it is evidence).
  $("declaration-result").textContent =
    `Qəbul edildi / Accepted: signed by ${verdict.signer.name}\n` +
    `${verdict.format}, SHA-256 ${verdict.sha256}`;
  $("declaration-result").dataset.accepted = "yes";
}

async function signPdf() {
  const pdf = new Uint8Array(await (await fetch("/sample.pdf")).arrayBuffer());
  const a = await getAgent();
  const chosen = await a.selectCertificate({ purpose: "sign" });
  let b64 = "";
  for (let i = 0; i < pdf.length; i += 0x8000) b64 += String.fromCharCode(...pdf.subarray(i, i + 0x8000));
  const { pdf: signed } = await a.signPdf({ handle: chosen.handle, pdf: btoa(b64), level: "B-B",
    reason: "DEMO", display: { documentName: "arayis.pdf" } });
  const url = URL.createObjectURL(new Blob([fromBase64(signed)], { type: "application/pdf" }));
  $("download").href = url;
  $("download").hidden = false;
  $("pdf-result").textContent = "PAdES-B-B";
  $("pdf-result").dataset.signed = "yes";
  // Every signed PDF is checked on the server, not only offered for download.
  const { verification } = await api("/api/pdf/verify", { pdf: signed });
  showVerification("pdf-verification", verification);
}

async function signPdfOnServer() {
  // The third way: the PDF stays on the server. The page passes the chosen certificate to
  // the server, which prepares the signature and answers only the hash to sign.
  const a = await getAgent();
  const chosen = await a.selectCertificate({ purpose: "sign" });
  const doc = await api("/api/pdf/prepare", { certificate: chosen.certificate,
    chain: chosen.chain, algorithms: chosen.algorithms });
  const signed = await a.signHash({ handle: chosen.handle, hash: doc.hash,
    hashAlgorithm: doc.hashAlgorithm, scheme: doc.scheme,
    display: { documentName: doc.documentName, text: `${doc.documentName}, PAdES-${doc.level}` } });
  // The server checks the raw signature, completes the PDF, validates it and keeps it.
  const result = await api("/api/pdf/finish", { documentId: doc.documentId,
    signature: signed.signature, certificate: signed.certificate, scheme: signed.scheme,
    hashAlgorithm: signed.hashAlgorithm });
  $("server-download").href = result.download;
  $("server-download").hidden = false;
  showVerification("server-pdf-verification", result.verification);
  $("server-pdf-result").textContent =
    `PAdES-${result.level}, SHA-256 ${result.verification.sha256}`;
  $("server-pdf-result").dataset.signed = "yes";
}

/** Run one button's action with its message area showing progress, then the outcome. */
function action(area, fn) {
  return async (event) => {
    event?.preventDefault();
    busy(area);
    try {
      await fn();
      show(area, { state: "done", key: `done.${area}`, kind: null });
    } catch (error) {
      showError(area, error);
    }
  };
}

$("login").addEventListener("click", action("login", login));
$("declaration").addEventListener("submit", action("declaration", signDeclaration));
$("sign-pdf").addEventListener("click", action("pdf", signPdf));
$("sign-pdf-server").addEventListener("click", action("server-pdf", signPdfOnServer));
for (const button of document.querySelectorAll("#languages button")) {
  button.addEventListener("click", () => setLanguage(button.dataset.lang));
}
applyLanguage();
api("/api/me").then(({ user }) => showUser(user)).catch(() => {});
document.documentElement.dataset.ready = "yes";

// The page's own words must cover every kind the SDK names (a missing one would fall back
// to the general sentence): checked once at load, loudly in the console.
for (const kind of Object.values(Kind)) {
  for (const lang of LANGUAGES) {
    if (!TEXT[lang][kind]) console.error(`demo portal: no ${lang} message for ${kind}`);
  }
}
