"""Writes documents with the libraries people use to produce them, and a manifest of the
class each should get: reportlab and cairo (PDF), python-docx (docx), openpyxl (xlsx) and
odfpy (odt, ods). Usage: make.py DIR; prints the manifest as JSON."""

import json
import os
import sys

import cairo

from docx import Document
from odf.opendocument import OpenDocumentSpreadsheet, OpenDocumentText
from odf.table import Table, TableCell, TableRow
from odf.text import P
from openpyxl import Workbook
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

out = sys.argv[1]
manifest = []


def expect(name, klass, detector=None):
    manifest.append({"file": os.path.join(out, name), "class": klass, "detector": detector})


def pdf(name, lines, klass, detector=None, compress=1):
    c = canvas.Canvas(os.path.join(out, name), pagesize=A4, pageCompression=compress)
    y = 780
    for line in lines:
        c.drawString(72, y, line)
        y -= 16
    c.showPage()
    c.save()
    expect(name, klass, detector)


def cairo_pdf(name, lines, klass, detector=None):
    """Cairo subsets fonts: Latin text in a WinAnsi font, other scripts in a CID font
    (Identity-H) whose codes only its ToUnicode map explains."""
    surface = cairo.PDFSurface(os.path.join(out, name), 595, 842)
    c = cairo.Context(surface)
    c.select_font_face("DejaVu Sans")
    c.set_font_size(12)
    for i, line in enumerate(lines):
        c.move_to(72, 100 + 16 * i)
        c.show_text(line)
    surface.finish()
    expect(name, klass, detector)


def docx(name, paragraphs, klass, detector=None, table=None):
    d = Document()
    for runs in paragraphs:
        p = d.add_paragraph()
        for i, text in enumerate(runs):
            p.add_run(text).bold = i % 2 == 1
    if table:
        t = d.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                t.cell(r, c).text = text
    d.save(os.path.join(out, name))
    expect(name, klass, detector)


def xlsx(name, rows, klass, detector=None):
    wb = Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    wb.save(os.path.join(out, name))
    expect(name, klass, detector)


def odt(name, paragraphs, klass, detector=None):
    doc = OpenDocumentText()
    for text in paragraphs:
        doc.text.addElement(P(text=text))
    doc.save(os.path.join(out, name))
    expect(name, klass, detector)


def ods(name, rows, klass, detector=None):
    doc = OpenDocumentSpreadsheet()
    table = Table(name="Sheet1")
    for row in rows:
        tr = TableRow()
        for text in row:
            cell = TableCell()
            cell.addElement(P(text=text))
            tr.addElement(cell)
        table.addElement(tr)
    doc.spreadsheet.addElement(table)
    doc.save(os.path.join(out, name))
    expect(name, klass, detector)


pdf("card.pdf", ["Receipt", "Paid with 4111 1111 1111 1111, thank you."], "personal", "payment-card")
pdf("card-raw.pdf", ["Card 5500 0000 0000 0004 on file"], "personal", "payment-card", compress=0)
pdf("iban.pdf", ["Pay to DE89 3704 0044 0532 0130 00 by Friday."], "personal", "iban")
pdf("secret.pdf", ["Board minutes", "Strictly confidential: do not forward."], "sensitive")
pdf("accents.pdf", ["Société Générale, Zoë Müller, straße 12"], "general")
pdf("order.pdf", ["Order 1234567812345678 shipped", "Build 2.14.0.1, ticket 4421"], "general")

cairo_pdf("cairo-card.pdf", ["Карта клиента: 4111 1111 1111 1111 ✓"], "personal", "payment-card")
cairo_pdf("cairo-mail.pdf", ["Ελληνικά κείμενα", "write to zoë@example.com or ops@example.com"], "personal", "email")
cairo_pdf("cairo-plain.pdf", ["Заказ 1234567812345678, версия 2.1.0"], "general")

docx("card.docx", [["Card: ", "4111 1111 ", "1111 1111"]], "personal", "payment-card")
docx("mail.docx", [["Contact ", "jane.roe@example.com", " for details"]], "personal", "email")
docx("secret.docx", [["The ", "password", " is in the safe."]], "sensitive")
docx("split.docx", [["pass"], ["word"]], "general", table=[["pass", "word"]])
docx("notes.docx", [["Meeting notes: release 3.2.1 on 2024-05-03, 12 attendees."]], "general")

xlsx("mail.xlsx", [["Name", "Email"], ["Ann", "ann.lee@example.org"]], "personal", "email")
xlsx("ssn.xlsx", [["Employee", "SSN"], ["Bo", "123-45-6789"]], "personal", "us-ssn")
xlsx("client.xlsx", [["Sheet of client data"], [1, 2]], "sensitive")
xlsx("numbers.xlsx", [[1234567812345678, 42, 3.14], ["SKU-000123", 7, 0]], "general")

odt("phone.odt", ["Call +44 20 7946 0958 tomorrow."], "personal", "phone")
odt("dob.odt", ["Patient record", "Date of birth: 1980-02-29"], "personal", "date-of-birth")
odt("plain.odt", ["Confidentialité des données: voir la charte."], "general")
ods("ssn.ods", [["SSN", "123-45-6789"]], "personal", "us-ssn")
ods("inventory.ods", [["Item", "Qty"], ["Bolt M6", "1200"], ["Serial", "000-12-3456"]], "general")

json.dump(manifest, sys.stdout)
