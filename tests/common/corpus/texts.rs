//! The labelled texts of the corpus: what a person reading each one would call it.
//!
//! Every text is written once here and then laid out in every file format. Numbers that must
//! pass (or fail) a check digit are computed, not typed, so a label never rests on a typo.

use super::Class;

/// One labelled text: lines of prose, or of cells split by `cells` (a spreadsheet row).
pub struct Text {
    pub name: &'static str,
    pub class: Class,
    pub lines: Vec<String>,
    pub cells: Option<char>,
}

fn text(name: &'static str, class: Class, lines: &[&str]) -> Text {
    Text {
        name,
        class,
        lines: lines.iter().map(|l| l.to_string()).collect(),
        cells: None,
    }
}

fn owned(name: &'static str, class: Class, lines: Vec<String>) -> Text {
    Text {
        name,
        class,
        lines,
        cells: None,
    }
}

/// Every labelled text, sensitive, personal and general.
pub fn all() -> Vec<Text> {
    let mut all = sensitive();
    all.extend(personal());
    all.extend(near_misses());
    all.extend(plain_general());
    all
}

/// Neutral office prose, used to pad long documents.
fn filler(lines: usize) -> Vec<String> {
    const SENTENCES: &[&str] = &[
        "The team met on Tuesday to go through the plan for the next quarter.",
        "Most of the time went into the schedule for the warehouse move.",
        "Anna will send the updated floor plan once the architect has signed it off.",
        "We agreed to keep the weekly call short and to write decisions down.",
        "The printer on the second floor is out of toner again.",
        "Lunch on Friday is at the usual place; bring an umbrella.",
        "The budget review moves to the week after the holidays.",
        "Nobody objected to the new layout of the shared drive.",
        "Training for the new ticket system starts next month.",
        "The coffee machine in the kitchen has been repaired.",
        "Parking spaces near the entrance are reserved for visitors.",
    ];
    (0..lines)
        .map(|i| SENTENCES[(i * 7 + 3) % SENTENCES.len()].to_string())
        .collect()
}

fn sensitive() -> Vec<Text> {
    use Class::Sensitive as S;
    let mut deep = filler(400);
    deep.push("Appendix C is strictly confidential and stays in the legal folder.".into());
    deep.extend(filler(20));
    let mut late_table = vec!["Service\tUser\tNote".to_string()];
    late_table.extend((1..40).map(|i| format!("host-{i:02}\tsvc{i:02}\trotated in week {i}")));
    late_table.push("vault\tadmin\tPassword kept in the sealed envelope".into());
    vec![
        text(
            "keyword-confidential-title",
            S,
            &[
                "Confidential",
                "Draft budget for the board meeting. Do not forward.",
            ],
        ),
        text(
            "keyword-confidential-upper",
            S,
            &["This memo is CONFIDENTIAL and meant for the addressee only."],
        ),
        text(
            "keyword-confidential-sentence",
            S,
            &[
                "Thanks for the numbers.",
                "Please keep the merger plan confidential until it is announced on Monday.",
            ],
        ),
        text(
            "keyword-confidential-parenthesis",
            S,
            &["Salary bands for 2025 (confidential) are attached as a separate sheet."],
        ),
        text(
            "keyword-password-sentence",
            S,
            &["The guest network password changes every Monday morning."],
        ),
        text(
            "keyword-password-upper-label",
            S,
            &["Router in room 4", "PASSWORD: see the envelope in the safe"],
        ),
        text(
            "keyword-password-capital",
            S,
            &["Reset your Password before Friday; the old one expires at midnight."],
        ),
        text(
            "keyword-client-data-sentence",
            S,
            &["Attached is the client data export from the CRM with 4,200 rows."],
        ),
        text(
            "keyword-client-data-upper",
            S,
            &["CLIENT DATA - handle under the retention policy, section 3."],
        ),
        text(
            "keyword-client-data-mixed-case",
            S,
            &["We moved the Client Data to the new warehouse last night."],
        ),
        text(
            "keyword-mixed-language-fr",
            S,
            &[
                "Note interne pour l'équipe : le prévisionnel reste confidential",
                "jusqu'à la réunion de décembre, merci de ne pas le diffuser.",
            ],
        ),
        text(
            "keyword-mixed-language-de",
            S,
            &["Bitte das WLAN-Password nicht weitergeben, auch nicht an Kollegen aus München."],
        ),
        text(
            "keyword-typographic-quotes",
            S,
            &["“Confidential” – please don’t forward the draft… thanks."],
        ),
        owned("keyword-deep-in-long-document", S, deep),
        Text {
            name: "keyword-in-last-row-of-table",
            class: S,
            lines: late_table,
            cells: Some('\t'),
        },
    ]
}

/// A payment card number of `len` digits starting with `prefix`, the body filled from
/// `seed` and the last digit chosen so that the Luhn check passes (or fails, if `valid`
/// is false).
pub fn card(prefix: &str, len: usize, seed: u64, valid: bool) -> String {
    let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    let mut x = seed;
    while digits.len() < len - 1 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        digits.push(((x >> 33) % 10) as u8);
    }
    let check = luhn_check_digit(&digits);
    digits.push(if valid { check } else { (check + 1) % 10 });
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// A European Article Number (EAN-13 barcode) starting with `prefix`, the body filled from
/// `seed`, with its own check digit (weights 1 and 3, not Luhn's).
fn ean13(prefix: &str, seed: u64) -> String {
    let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    let mut x = seed;
    while digits.len() < 12 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        digits.push(((x >> 33) % 10) as u8);
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 1 { 3 } else { 1 })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// The digit that makes `body` plus it pass the Luhn check.
fn luhn_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match i % 2 {
                0 if d * 2 > 9 => d * 2 - 9,
                0 => d * 2,
                _ => d,
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// `digits` split into groups of the given sizes, joined by `sep`.
pub fn grouped(digits: &str, sizes: &[usize], sep: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = digits;
    for &n in sizes {
        let (a, b) = rest.split_at(n.min(rest.len()));
        parts.push(a);
        rest = b;
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts.join(sep)
}

/// An IBAN for `country` and `bban` with the right check digits (or wrong ones, one off,
/// if `valid` is false), written in groups of four separated by spaces when `spaced`.
pub fn iban(country: &str, bban: &str, valid: bool, spaced: bool) -> String {
    let rearranged = format!("{bban}{country}00");
    let rem = rearranged.bytes().fold(0u32, |acc, c| match c {
        b'0'..=b'9' => (acc * 10 + u32::from(c - b'0')) % 97,
        _ => (acc * 100 + u32::from(c.to_ascii_uppercase() - b'A') + 10) % 97,
    });
    let check = 98 - rem;
    let check = if valid { check } else { check % 97 + 1 };
    let compact = format!("{country}{check:02}{bban}");
    if spaced {
        let sizes = vec![4; compact.len() / 4];
        grouped(&compact, &sizes, " ")
    } else {
        compact
    }
}

fn personal() -> Vec<Text> {
    use Class::Personal as P;
    let visa = grouped(&card("4532", 16, 11, true), &[4, 4, 4, 4], " ");
    let visa13 = card("4929", 13, 12, true);
    let mc = grouped(&card("5425", 16, 13, true), &[4, 4, 4, 4], "-");
    let mc2 = grouped(&card("2223", 16, 14, true), &[4, 4, 4, 4], " ");
    let amex = grouped(&card("3714", 15, 15, true), &[4, 6, 5], " ");
    let discover = grouped(&card("6011", 16, 16, true), &[4, 4, 4, 4], "-");
    let jcb = card("3530", 16, 17, true);
    let diners = grouped(&card("3056", 14, 18, true), &[4, 6, 4], " ");
    let unionpay = grouped(&card("6212", 19, 19, true), &[4, 4, 4, 4, 3], " ");
    let de = iban("DE", "370400440532013000", true, true);
    let gb = iban("GB", "NWBK60161331926819", true, true);
    let fr = iban("FR", "20041010050500013M02606", true, true);
    let nl = iban("NL", "ABNA0417164300", true, false);
    let es = iban("ES", "21000418450200051332", true, true);
    let it = iban("IT", "X0542811101000000123456", true, false);
    let ch = iban("CH", "00762011623852957", true, true);
    let mut deep = filler(300);
    deep.push(format!(
        "Refund approved; send it to card {visa} by Friday."
    ));
    deep.extend(filler(30));
    vec![
        owned(
            "card-visa-spaces",
            P,
            vec![format!(
                "Please charge the deposit to my Visa {visa}, expiry 09/27."
            )],
        ),
        owned(
            "card-visa-13-digits",
            P,
            vec![format!("Old Visa on file: {visa13} (replaced last year).")],
        ),
        owned(
            "card-mastercard-dashes",
            P,
            vec![format!(
                "Card: {mc} (Mastercard), security code on the back."
            )],
        ),
        owned(
            "card-mastercard-2-series",
            P,
            vec![format!(
                "New Mastercard {mc2} issued to the travel team lead."
            )],
        ),
        owned(
            "card-amex",
            P,
            vec![format!("Amex {amex} was used for the hotel booking.")],
        ),
        Text {
            name: "card-table-of-issuers",
            class: P,
            lines: vec![
                "Holder\tIssuer\tNumber".into(),
                format!("R. Okafor\tDiscover\t{discover}"),
                format!("L. Ferreira\tJCB\t{jcb}"),
                format!("T. Nguyen\tDiners Club\t{diners}"),
                format!("W. Zhang\tUnionPay\t{unionpay}"),
            ],
            cells: Some('\t'),
        },
        owned(
            "card-typographic-quotes",
            P,
            vec![format!(
                "Refund of €120.00 to card {mc} – approved by ‘Billing’."
            )],
        ),
        owned("card-deep-in-long-document", P, deep),
        owned(
            "iban-de-mixed-language",
            P,
            vec![
                "Sehr geehrte Frau Müller,".into(),
                format!("bitte überweisen Sie den Betrag auf das Konto {de} bis Freitag."),
            ],
        ),
        owned(
            "iban-gb",
            P,
            vec![format!("Payee: Acme Ltd, IBAN {gb}, reference INV-2231.")],
        ),
        owned(
            "iban-fr-mixed-language",
            P,
            vec![format!(
                "Virement sur le compte {fr} avant l'échéance du mois."
            )],
        ),
        owned(
            "iban-compact-nl-it",
            P,
            vec![format!("IBAN: {nl}"), format!("Second account: {it}")],
        ),
        owned(
            "iban-es-mixed-language",
            P,
            vec![format!(
                "Transferencia a la cuenta {es}, titular José Núñez."
            )],
        ),
        owned(
            "iban-ch",
            P,
            vec![format!("Salary account (Zürich branch): {ch}")],
        ),
        text(
            "ssn-label",
            P,
            &["Employee SSN 536-22-1987 goes on the payroll form, nowhere else."],
        ),
        text(
            "ssn-sentence",
            P,
            &["Her Social Security number is 412-67-3301, as on the card."],
        ),
        text(
            "email-sentence",
            P,
            &["Contact jane.doe@example.com for the keys to the storage room."],
        ),
        text(
            "email-plus-address",
            P,
            &["Invoices go to m.mueller+rechnungen@firma-beispiel.de."],
        ),
        text(
            "email-mixed-language-fr",
            P,
            &["Réponse à envoyer à marie.dupont@exemple.fr avant lundi, s'il vous plaît."],
        ),
        text(
            "phone-international-gb",
            P,
            &["Call me on +44 20 7946 0958 after six."],
        ),
        text(
            "phone-international-de",
            P,
            &["Rückruf bitte unter Tel. +49 30 1234 5678 (Büro)."],
        ),
        text(
            "phone-international-fr",
            P,
            &["Standard : +33 1 42 68 53 00, du lundi au vendredi."],
        ),
        text(
            "phone-north-american",
            P,
            &["Office: (212) 555-0147, mobile 415-555-0199."],
        ),
        text(
            "phone-north-american-dots",
            P,
            &["Call the front desk at 415.555.0199 after nine."],
        ),
        text(
            "email-angle-brackets",
            P,
            &["From: Jane Doe <Jane.Doe@Example.COM>", "Subject: keys"],
        ),
        text("dob-iso", P, &["Date of birth: 1984-03-17"]),
        text(
            "dob-written-out",
            P,
            &["Curriculum vitae", "Date of birth: 17 March 1984"],
        ),
        text("dob-born-month-name", P, &["Born March 17, 1984 in Ohio."]),
        text(
            "dob-dotted-label",
            P,
            &["Member card", "D.O.B.: 17/03/1984"],
        ),
        text("dob-us", P, &["Patient intake form", "DOB 07/04/1979"]),
        text("dob-born", P, &["Marc Aubert, born 12.05.1990 in Lyon."]),
        text(
            "dob-german",
            P,
            &["Name: Jürgen Weiß", "Geburtsdatum: 03.11.1975"],
        ),
        text(
            "dob-spanish",
            P,
            &["Ficha del socio", "Fecha de nacimiento: 14/02/1988"],
        ),
        Text {
            name: "contact-form",
            class: P,
            lines: vec![
                "Field\tValue".into(),
                "Name\tOla Nordmann".into(),
                "E-mail\tola.nordmann@example.no".into(),
                "Phone\t+47 912 34 567".into(),
            ],
            cells: Some('\t'),
        },
    ]
}

/// The Visa number of [`order_confirmation`], without spaces.
pub fn order_card() -> String {
    card("4916", 16, 77, true)
}

/// An order confirmation holding one Visa number, for the focused document tests.
pub fn order_confirmation() -> Text {
    let number = grouped(&order_card(), &[4, 4, 4, 4], " ");
    Text {
        name: "order-confirmation",
        class: Class::Personal,
        lines: vec![
            "Order confirmation".into(),
            format!("Paid with card {number} on 2024-11-05."),
        ],
        cells: None,
    }
}

fn near_misses() -> Vec<Text> {
    use Class::General as G;
    let bad_card = grouped(&card("4539", 16, 21, false), &[4, 4, 4, 4], " ");
    let bad_mc = card("5412", 16, 22, false);
    let order_luhn_ok = card("9100", 16, 23, true);
    let bad_de = iban("DE", "370400440532013000", false, true);
    let bad_gb = iban("GB", "NWBK60161331926819", false, false);
    vec![
        owned(
            "luhn-invalid-card-shaped",
            G,
            vec![
                format!("Batch {bad_card} failed the nightly import."),
                format!("Reference {bad_mc} was typed in by hand and rejected."),
            ],
        ),
        owned(
            "order-numbers",
            G,
            vec![
                "Order #100045678 shipped on 2024-05-02.".into(),
                format!("Order {order_luhn_ok} is waiting for the customs papers."),
                "Order 2024-0571-33 was split into two parcels.".into(),
            ],
        ),
        text(
            "invoice-and-tracking-numbers",
            G,
            &[
                "Invoice INV-2024-000731 is due in 30 days.",
                "UPS tracking 1Z999AA10123456784, USPS 9400 1000 0000 0000 0000 00.",
                "Purchase order PO-88213-7, delivery note 7731 0042 19.",
            ],
        ),
        text(
            "version-strings",
            G,
            &[
                "Upgraded the agent from 1.2.3.4 to 10.0.19045.3570 overnight.",
                "Requires openssl 3.0.13 and glibc 2.36; tested on kernel 6.1.0-18.",
            ],
        ),
        text(
            "ip-addresses",
            G,
            &[
                "Blocked 192.168.100.254 and 10.0.0.1; allowed 2001:db8::1 and 172.16.254.3.",
                "The load balancer listens on 203.0.113.10:8443.",
            ],
        ),
        text(
            "uuids",
            G,
            &[
                "Request 550e8400-e29b-41d4-a716-446655440000 failed, retried as",
                "6fa459ea-ee8a-3ca4-894e-db77e160355e after 120 ms.",
            ],
        ),
        text(
            "hex-hashes",
            G,
            &[
                "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
                "md5 d41d8cd98f00b204e9800998ecf8427e",
            ],
        ),
        text(
            "timestamps-and-dates",
            G,
            &[
                "2024-03-17T08:15:30Z job started; finished 2024-03-17 08:16:02.",
                "Created 1984-03-17, modified 07/04/2019, archived 12.05.2021.",
                "Next review: 2025-01-31 at 14:00 (UTC+01:00).",
            ],
        ),
        text(
            "born-without-date",
            G,
            &["The project was born out of a hackathon and now has 40 contributors."],
        ),
        text(
            "source-code",
            G,
            &[
                "fn check_password_hash(stored: &str, given: &str) -> bool {",
                "    let timeout_ms = 30000;",
                "    let buf = [0u8; 4096];",
                "    let client_data = load(\"/var/lib/app/cache.bin\", 8080)?;",
                "    verify(stored, given, timeout_ms, &buf, client_data.len() as u64)",
                "}",
            ],
        ),
        text(
            "log-lines",
            G,
            &[
                "2024-06-01 12:00:03 INFO worker[18231] processed job 4811273645 in 35 ms",
                "2024-06-01 12:00:04 WARN worker[18232] retry 3/5 for request_id=1718000000123456",
                "2024-06-01 12:00:05 INFO http 200 GET /api/v2/items?page=17 bytes=52311",
            ],
        ),
        text(
            "passwordless-nonconfidential",
            G,
            &[
                "We switched to passwordless sign-in for the nonconfidential dashboards.",
                "The passwords_policy.md draft and the client_data table are unrelated.",
            ],
        ),
        owned(
            "iban-bad-checksum",
            G,
            vec![
                format!("The form rejected {bad_de} as mistyped."),
                format!("So was {bad_gb}."),
            ],
        ),
        text(
            "ssn-shaped-unissued",
            G,
            &["Placeholder codes 000-12-3456, 666-45-1234 and 912-34-5678 are never issued."],
        ),
        Text {
            name: "inventory-barcodes",
            class: G,
            lines: std::iter::once("Item\tEAN\tQty".to_string())
                .chain(
                    [
                        "Stapler", "Toner", "Binder", "Pens", "Paper", "Tape", "Folder", "Marker",
                        "Scissors", "Glue",
                    ]
                    .iter()
                    .zip(0u64..)
                    .map(|(item, i)| {
                        let ean = ean13(&format!("40{i}"), 40 + i);
                        format!("{item}\t{ean}\t{}", 3 + i * 7 % 11)
                    }),
                )
                .collect(),
            cells: Some('\t'),
        },
        Text {
            name: "csv-of-numbers",
            class: G,
            lines: [
                "id,qty,price,warehouse",
                "1001,3,19.99,7",
                "1002,12,4.50,7",
                "1003,1,1299.00,12",
                "1004,250,0.35,3",
                "1005,8,64.00,12",
            ]
            .iter()
            .map(|l| l.to_string())
            .collect(),
            cells: Some(','),
        },
        text(
            "mention-not-email",
            G,
            &["Ping @jane.doe in the channel; the host is admin@db01 on the VPN."],
        ),
        text(
            "signed-decimals",
            G,
            &[
                "Location: +48.856613, +2.352222 (Paris office).",
                "Avogadro constant: +6.02214076e23 per mole.",
            ],
        ),
        text(
            "isbn-and-measurements",
            G,
            &[
                "ISBN 978-3-16-148410-0, 312 pages, 24 x 17 cm.",
                "Score 3-2 after extra time; 12,345 people attended.",
            ],
        ),
        text(
            "french-confidentialite",
            G,
            &[
                "Politique de confidentialité : nous protégeons vos données.",
                "La confidentialité des échanges est garantie par le contrat.",
            ],
        ),
        text(
            "spanish-confidencial",
            G,
            &["La información confidencial se guarda en el armario de la oficina."],
        ),
    ]
}

fn plain_general() -> Vec<Text> {
    use Class::General as G;
    vec![
        owned("meeting-notes-long", G, filler(250)),
        text(
            "prices-typographic-quotes",
            G,
            &["The “Basic” plan costs €9.99 – the “Pro™” plan €19.99 per month…"],
        ),
        text(
            "prose-german",
            G,
            &[
                "Die Übergabe der Schlüssel findet am Montag statt.",
                "Größere Änderungen am Grundriss besprechen wir nächste Woche.",
            ],
        ),
        text(
            "prose-spanish",
            G,
            &["El señor Ibáñez llegó tarde a la reunión por la huelga de trenes."],
        ),
        text(
            "prose-french",
            G,
            &["Le déménagement du dépôt est prévu pour l'été, après les congés."],
        ),
    ]
}
