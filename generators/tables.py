"""Synthetic tables for SynL: typed columns, built-in themes, rows made by code, four renderings.

A table is described by a `TableSchema` (a *theme*: "orders", "employees", ...) whose columns each
have a `Column` type: a key, person/company/product names, integers, decimals, dates, categories,
short free text, or a foreign key into another theme. The built-in themes below need no network
and no model; a later issue lets an LLM propose themes, which only has to fill the same two
dataclasses, so nothing else here knows where a theme came from.

Rows are produced by `TableData` in blocks of `BLOCK` rows, each block from its own seeded numpy
generator. Block `b` of a table never depends on how many blocks follow, so a table of n rows is
always the prefix of the same table with more rows. That is what lets the SynL length fitting grow
or shrink a table without redrawing it, and lets it size tables by a binary search.

Values are held typed in a polars DataFrame: strings for keys, names, categories and text; Int64
for integers; decimals as Int64 hundredths (so sums and comparisons are exact, never floats);
`pl.Date` for dates. Foreign keys are stored as uniform draws in [0, 1) and resolved against the
referenced table's current row count (`resolve_foreign_keys`), so they always point at a row that
is present in the prompt, whatever sizes the fitting settles on.

Every rendering (markdown, CSV, JSON lines, HTML) is a function of the frame and writes each value
in one canonical text (`cell_text`): decimals with exactly two places, ISO dates, integers in plain
digits. A parser of the rendered text therefore recovers every value exactly, which is what the
tests do to recompute each answer independently. Numbers are never negative and no value holds a
pipe, a tab, a newline or a double quote, so even a naive parser of any format cannot misread one;
commas, ampersands and apostrophes do occur and exercise the CSV and HTML escaping.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import numpy as np
import polars as pl

ColumnKind = Literal["key", "name", "int", "decimal", "date", "category", "text", "fk"]
FORMATS = ("markdown", "csv", "jsonl", "html")
ORDERED_KINDS = ("int", "decimal", "date")  # kinds with an order: thresholds, min/max, comparisons
NUMERIC_KINDS = ("int", "decimal")  # kinds with sums and means
BLOCK = 512  # most rows per generation block: one numpy draw per column and block
KEY_DIGITS = 6  # keys are PREFIX + 6 digits: room for 10^6 distinct rows per table
_EPOCH = dt.date(1970, 1, 1)


# -- schema ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One typed column of a theme.

    `low`/`high` bound integers and decimals (in whole units, decimals get two places); `log` draws
    them log-uniformly (prices, populations); `start`/`end` bound dates (ISO strings); `choices`
    are the values of a category; `pool` names the generator of names (`person`, `company`,
    `product`, `title`, `place`) or text (`note`); `prefix` is a key's letters; `ref` is the theme
    a foreign key points into.
    """

    name: str
    kind: ColumnKind
    low: float = 0
    high: float = 0
    log: bool = False
    start: str = "2000-01-01"
    end: str = "2024-12-31"
    choices: tuple[str, ...] = ()
    pool: str = ""
    prefix: str = ""
    ref: str = ""


@dataclass(frozen=True)
class TableSchema:
    """A theme: a named entity with a key column, candidate columns, and themes it may point to."""

    name: str  # plural, shown in titles: "orders"
    entity: str  # singular, used in questions: "order"
    key: Column
    columns: tuple[Column, ...]
    refs: tuple[str, ...] = ()  # themes this one may hold a foreign key into

    def column(self, name: str) -> Column:
        for c in (self.key, *self.columns):
            if c.name == name:
                return c
        raise KeyError(name)


def fk_column(target: TableSchema) -> Column:
    """The foreign-key column a table gets when it points at `target`: named like target's key."""
    return Column(target.key.name, "fk", ref=target.name)


# -- value pools -----------------------------------------------------------------------------------
FIRST = (
    "Ada", "Alan", "Alice", "Amara", "Anna", "Arjun", "Aziz", "Beatriz", "Ben", "Carla", "Chen", "Chloe", "Dara",
    "Diego", "Elena", "Emil", "Esther", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Jana",
    "Jonas", "Julia", "Kai", "Kenji", "Lars", "Layla", "Leo", "Lina", "Luca", "Maya", "Mei", "Mila", "Nadia",
    "Nina", "Noah", "Olga", "Omar", "Paula", "Pedro", "Priya", "Rafael", "Rosa", "Sami", "Sara", "Sofia", "Tariq",
    "Teresa", "Tom", "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zoe", "José", "Zoë", "Björn", "Chiara", "Dmitri",
    "Ewa", "Fatima", "Gustav", "Ingrid", "Kofi", "Lucía"
)
LAST = (
    "Abbott", "Adeyemi", "Alvarez", "Andersen", "Bauer", "Becker", "Brennan", "Castillo", "Chowdhury", "Costa",
    "Dubois", "Eriksen", "Fischer", "Garcia", "Gupta", "Haddad", "Hansen", "Ito", "Ivanova", "Jensen", "Kaur",
    "Keller", "Kim", "Kowalski", "Larsen", "Lee", "Lopez", "Marino", "Meyer", "Moreau", "Nakamura", "Novak",
    "Okafor", "Olsen", "Park", "Patel", "Petrov", "Quinn", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Sousa",
    "Tanaka", "Torres", "Varga", "Vogel", "Wagner", "Walsh", "Weber", "Wong", "Yilmaz", "Zhang", "Ziegler",
    "O'Neill", "D'Souza", "Müller", "Nguyen", "Haas", "Lindqvist", "Mensah", "Rahman", "Ortega", "Kovacs",
    "Ferreira"
)
COMPANY_A = (
    "Acme", "Apex", "Atlas", "Aurora", "Beacon", "Blue", "Cedar", "Cobalt", "Crescent", "Delta", "Ember",
    "Evergreen", "Falcon", "Granite", "Harbor", "Horizon", "Iron", "Juniper", "Keystone", "Lumen", "Maple",
    "Meridian", "Nova", "Oak", "Orion", "Pioneer", "Quartz", "Redwood", "Sierra", "Silver", "Summit", "Tidal",
    "Vertex", "Willow", "Zenith", "Northwind", "Bright", "Polar", "Coral"
)
COMPANY_B = (
    "Labs", "Industries", "Logistics", "Foods", "Systems", "Partners", "Works", "Trading", "Group",
    "Supply", "Holdings", "Textiles", "Devices", "& Sons", "& Co", "Analytics", "Motors", "Goods",
)
PRODUCT_ADJ = (
    "Compact", "Deluxe", "Eco", "Ergonomic", "Classic", "Smart", "Portable", "Heavy-duty", "Silent", "Wireless",
    "Rugged", "Slim", "Premium", "Modular", "Foldable", "Vintage", "Turbo", "Ultra", "Basic", "Pro", "Mini",
    "Solar", "Digital", "Thermal", "Magnetic", "Adjustable"
)
PRODUCT_NOUN = (
    "Kettle", "Lamp", "Chair", "Backpack", "Drill", "Speaker", "Blender", "Monitor", "Tent", "Jacket", "Keyboard",
    "Mixer", "Heater", "Scanner", "Router", "Camera", "Bottle", "Stool", "Printer", "Toaster", "Charger", "Fan",
    "Helmet", "Mat", "Shelf", "Cooler", "Scale", "Projector"
)
TITLE_ADJ = (
    "Silent", "Hidden", "Last", "Burning", "Golden", "Broken", "Distant", "Forgotten", "Crimson", "Quiet",
    "Endless", "Wandering", "Silver", "Hollow", "Frozen", "Secret", "Bright", "Lonely", "Ancient", "Restless",
    "Gentle", "Wild", "Final", "Lost"
)
TITLE_NOUN = (
    "River", "Garden", "Empire", "Harbor", "Winter", "Orchard", "Mirror", "Tide", "Kingdom", "Lantern", "Compass",
    "Storm", "Forest", "Letter", "Voyage", "Island", "Memory", "Bridge", "Signal", "Promise", "Shadow", "Mountain",
    "Station", "Archive"
)
PLACES = (
    "Lyon", "Porto", "Osaka", "Austin", "Leeds", "Gdansk", "Bergen", "Tartu", "Cork", "Graz", "Bilbao", "Malmo",
    "Turin", "Utrecht", "Brno", "Nantes", "Kyoto", "Denver", "Perth", "Quebec", "Seville", "Tampere", "Valencia",
    "Zagreb", "Aarhus", "Bologna", "Cusco", "Dakar", "Hobart", "Izmir", "Jaipur", "Kaunas", "Lagos", "Lille",
    "Medan", "Nagoya", "Oslo", "Pune", "Recife", "Sapporo", "Tbilisi", "Varna", "Windhoek", "Yerevan"
)
COUNTRIES = (
    "France", "Portugal", "Japan", "United States", "United Kingdom", "Poland", "Norway", "Estonia",
    "Ireland", "Austria", "Spain", "Sweden", "Italy", "Netherlands", "Czechia", "Canada", "Peru",
    "Senegal", "Australia", "Turkey", "India", "Lithuania", "Nigeria", "Indonesia", "Brazil", "Georgia",
)
NOTE_WORDS = (
    "urgent", "review", "pending", "fragile", "priority", "delayed", "checked", "approved", "returned", "partial",
    "backorder", "verified", "flagged", "repeat", "seasonal", "bulk", "sample", "damaged", "replaced", "audited",
    "renewed", "premium", "local", "export", "draft", "confirmed", "on", "hold", "follow-up", "requested", "manual",
    "automatic", "weekly", "monthly", "quarterly", "corrected", "archived", "missing", "label", "signed", "sealed",
    "refunded", "escalated", "cleared", "discounted", "standard", "express", "overnight"
)


def _cat(name: str, *choices: str) -> Column:
    return Column(name, "category", choices=tuple(choices))


def _int(name: str, low: int, high: int, log: bool = False) -> Column:
    return Column(name, "int", low=low, high=high, log=log)


def _dec(name: str, low: float, high: float, log: bool = False) -> Column:
    return Column(name, "decimal", low=low, high=high, log=log)


def _date(name: str, start: str, end: str) -> Column:
    return Column(name, "date", start=start, end=end)


def _name(name: str, pool: str) -> Column:
    return Column(name, "name", pool=pool)


def _key(name: str, prefix: str) -> Column:
    return Column(name, "key", prefix=prefix)


NOTE = Column("note", "text", pool="note")
_CITY = Column("city", "category", choices=tuple(PLACES))
_COUNTRY = Column("country", "category", choices=COUNTRIES)
_THEMES = (
    TableSchema("employees", "employee", _key("employee_id", "E"), (
        _name("full_name", "person"), _cat("job_title", "Engineer", "Analyst", "Manager", "Designer", "Technician",
                                           "Recruiter", "Accountant", "Consultant", "Architect", "Support Agent"),
        _int("salary", 28_000, 240_000), _dec("bonus", 0, 25_000), _date("hire_date", "1996-01-01", "2024-12-31"),
        _date("birth_date", "1958-01-01", "2003-12-31"), _int("level", 1, 12), _CITY,
        _cat("status", "Active", "On leave", "Contractor", "Probation", "Retired"), _dec("rating", 1, 5),
        _int("extension", 100, 9999), _cat("shift", "Day", "Night", "Rotating", "Remote"),
        _int("vacation_days", 0, 40), _cat("team", "Core", "Platform", "Growth", "R&D", "Ops", "Finance", "Legal"), NOTE,
    ), refs=("departments", "offices")),
    TableSchema("departments", "department", _key("dept_id", "D"), (
        _name("dept_name", "company"), _dec("budget", 50_000, 9_000_000, log=True), _int("headcount", 3, 900),
        _date("founded", "1980-01-01", "2023-12-31"), _int("floor", 1, 45), _name("head", "person"),
        _int("cost_center", 1000, 9999), _cat("region", "North", "South", "East", "West", "Central", "Overseas"),
        _cat("function", "Research", "Sales", "Marketing", "Support", "Production", "Finance", "HR & Admin"),
        _dec("travel_budget", 0, 400_000), _int("open_positions", 0, 60), _date("last_audit", "2015-01-01", "2024-12-31"),
        _cat("risk_level", "Low", "Medium", "High"), NOTE,
    ), refs=("offices",)),
    TableSchema("offices", "office", _key("office_id", "OF"), (
        _name("office_name", "place"), _CITY, _COUNTRY, _date("opened", "1975-01-01", "2024-06-30"),
        _int("desks", 10, 2500), _dec("monthly_rent", 2_000, 900_000, log=True),
        _cat("timezone", "UTC-08:00", "UTC-05:00", "UTC+00:00", "UTC+01:00", "UTC+02:00", "UTC+05:30", "UTC+09:00"),
        _int("meeting_rooms", 1, 120), _cat("ownership", "Leased", "Owned", "Shared"), _int("parking_spaces", 0, 1500),
        _dec("energy_cost", 100, 90_000), _name("site_manager", "person"), _date("renovated", "1990-01-01", "2024-12-31"),
        _cat("security", "Badge", "Badge & PIN", "Guarded", "Open"), NOTE,
    ), refs=("cities",)),
    TableSchema("cities", "city", _key("city_id", "CT"), (
        _name("city_name", "place"), _COUNTRY, _int("population", 5_000, 25_000_000, log=True),
        _dec("area_km2", 5, 8_000, log=True), _int("elevation_m", 0, 3_600), _name("mayor", "person"),
        _cat("climate", "Oceanic", "Continental", "Mediterranean", "Tropical", "Arid", "Subarctic"),
        _int("founded_year", 800, 1990), _dec("avg_rent", 250, 4_500), _int("universities", 0, 60),
        _cat("airport", "None", "Regional", "International", "Hub"), _dec("rainfall_mm", 50, 3_000),
        _date("last_census", "2000-01-01", "2024-12-31"), _int("museums", 0, 200), NOTE,
    )),
    TableSchema("customers", "customer", _key("customer_id", "C"), (
        _name("full_name", "person"), _CITY, _cat("segment", "Retail", "Corporate", "Small Business", "Public Sector"),
        _date("signup_date", "2008-01-01", "2024-12-31"), _int("loyalty_points", 0, 90_000),
        _dec("credit_limit", 500, 250_000, log=True), _cat("newsletter", "Yes", "No"), _int("age", 18, 92),
        _cat("tier", "Bronze", "Silver", "Gold", "Platinum"), _dec("lifetime_value", 0, 500_000, log=True),
        _cat("preferred_channel", "Email", "Phone", "Store", "App"), _int("orders_count", 0, 400),
        _date("last_contact", "2018-01-01", "2024-12-31"), _cat("language", "English", "French", "Spanish", "German",
                                                                   "Japanese", "Portuguese"), NOTE,
    ), refs=("cities",)),
    TableSchema("orders", "order", _key("order_id", "O"), (
        _date("order_date", "2019-01-01", "2024-12-31"),
        _cat("status", "Pending", "Shipped", "Delivered", "Cancelled", "Returned"), _int("quantity", 1, 60),
        _dec("unit_price", 1, 2_500, log=True), _dec("amount", 5, 60_000, log=True), _int("discount_pct", 0, 40),
        _cat("channel", "Web", "Store", "Phone", "Partner"), _cat("priority", "Low", "Medium", "High", "Urgent"),
        _date("ship_date", "2019-01-01", "2025-02-28"), _cat("payment", "Card", "Cash", "Transfer", "Voucher"),
        _dec("shipping_fee", 0, 250), _int("items", 1, 25), _cat("gift_wrap", "Yes", "No"), NOTE,
    ), refs=("customers", "products", "employees")),
    TableSchema("products", "product", _key("product_id", "P"), (
        _name("product_name", "product"), _cat("category", "Kitchen", "Outdoor", "Office", "Audio", "Tools",
                                               "Garden", "Sports", "Lighting", "Home & Living"),
        _dec("price", 2, 4_000, log=True), _int("stock", 0, 5_000), _dec("weight_kg", 0.05, 80, log=True),
        _date("launch_date", "2010-01-01", "2024-12-31"), _dec("rating", 1, 5),
        _cat("color", "Black", "White", "Red", "Blue", "Green", "Grey", "Silver", "Orange"),
        _int("warranty_months", 0, 60), _int("units_sold", 0, 250_000, log=True), _dec("cost", 1, 3_000, log=True),
        _cat("origin", "Domestic", "Imported"), _int("reorder_level", 0, 500), _date("last_restock", "2020-01-01", "2024-12-31"),
        NOTE,
    ), refs=("suppliers",)),
    TableSchema("suppliers", "supplier", _key("supplier_id", "S"), (
        _name("company_name", "company"), _COUNTRY, _date("partner_since", "1990-01-01", "2024-12-31"),
        _dec("rating", 1, 5), _int("lead_time_days", 1, 120), _name("contact", "person"),
        _cat("terms", "Net 15", "Net 30", "Net 60", "Prepaid", "On delivery"), _dec("annual_spend", 1_000, 5_000_000, log=True),
        _int("open_orders", 0, 300), _cat("certified", "Yes", "No"), _int("employees", 2, 40_000, log=True),
        _date("last_audit", "2012-01-01", "2024-12-31"), _cat("risk", "Low", "Medium", "High"), NOTE,
    ), refs=("cities",)),
    TableSchema("flights", "flight", _key("flight_no", "FL"), (
        _cat("origin", "AMS", "ATL", "BOM", "CDG", "DXB", "FRA", "GRU", "HND", "JFK", "LHR", "MAD", "SIN", "SYD", "YYZ"),
        _cat("destination", "ARN", "BCN", "BKK", "CPT", "DEL", "DUB", "HKG", "IST", "LAX", "LIS", "MEX", "ORD", "VIE", "ZRH"),
        _date("departure_date", "2023-01-01", "2024-12-31"), _int("duration_min", 45, 1_100), _int("seats", 50, 520),
        _dec("fare", 39, 4_800, log=True), _cat("status", "On time", "Delayed", "Cancelled", "Boarding", "Landed"),
        _name("captain", "person"), _int("distance_km", 150, 15_500), _int("passengers", 0, 520),
        _dec("fuel_tonnes", 1, 160), _cat("cabin", "Economy", "Premium", "Business", "Mixed"),
        _int("delay_min", 0, 600), _cat("meal", "None", "Snack", "Hot meal", "Vegetarian & Vegan"), NOTE,
    ), refs=("aircraft",)),
    TableSchema("aircraft", "aircraft", _key("tail_no", "AC"), (
        _cat("model", "A220", "A320neo", "A321", "A330", "A350", "B737-800", "B737 MAX", "B777", "B787", "E190"),
        _int("seats", 90, 480), _date("first_flight", "1995-01-01", "2024-06-30"), _int("range_km", 2_000, 16_000),
        _int("hours_flown", 100, 120_000, log=True), _date("last_check", "2021-01-01", "2024-12-31"),
        _cat("base", "AMS", "ATL", "CDG", "DXB", "FRA", "HND", "JFK", "LHR", "SIN"), _dec("value_musd", 8, 380),
        _cat("engine", "CFM56", "LEAP-1A", "LEAP-1B", "GEnx", "Trent XWB", "PW1000G"), _int("cycles", 50, 60_000),
        _cat("owner", "Owned", "Leased", "Wet-leased"), _dec("fuel_burn_kg_h", 1_500, 8_500), NOTE,
    ), refs=("airlines",)),
    TableSchema("airlines", "airline", _key("airline_id", "AL"), (
        _name("airline_name", "company"), _COUNTRY, _date("founded", "1920-01-01", "2020-12-31"),
        _int("fleet_size", 3, 900), _cat("alliance", "None", "Star", "Oneworld", "SkyTeam"),
        _dec("revenue_musd", 20, 60_000, log=True), _int("destinations", 5, 350), _name("ceo", "person"),
        _cat("model", "Full service", "Low cost", "Regional", "Charter"), _dec("on_time_pct", 40, 99),
        _int("employees", 150, 120_000, log=True), _date("last_safety_audit", "2015-01-01", "2024-12-31"), NOTE,
    ), refs=("cities",)),
    TableSchema("shipments", "shipment", _key("shipment_id", "SH"), (
        _date("ship_date", "2020-01-01", "2024-12-31"), _cat("carrier", "Rapid", "Northline", "Globex", "Parcelo", "Swiftway"),
        _dec("weight_kg", 0.2, 900, log=True), _dec("cost", 3, 2_400, log=True),
        _cat("status", "Created", "In transit", "Delivered", "Lost", "Returned"), _date("delivery_date", "2020-01-02", "2025-01-31"),
        _int("packages", 1, 40), _cat("insured", "Yes", "No"), _int("distance_km", 2, 9_000),
        _cat("service", "Economy", "Standard", "Express", "Same day"), _dec("declared_value", 0, 50_000, log=True),
        _int("attempts", 1, 5), NOTE,
    ), refs=("orders", "warehouses")),
    TableSchema("warehouses", "warehouse", _key("warehouse_id", "W"), (
        _name("warehouse_name", "place"), _int("capacity_pallets", 200, 90_000, log=True),
        _date("opened", "1985-01-01", "2024-06-30"), _name("manager", "person"), _int("area_m2", 800, 250_000, log=True),
        _cat("climate_control", "None", "Chilled", "Frozen", "Humidity"), _dec("monthly_cost", 4_000, 1_500_000, log=True),
        _int("docks", 2, 120), _int("staff", 4, 1_500), _cat("automation", "Manual", "Partial", "Full"),
        _date("last_inspection", "2018-01-01", "2024-12-31"), _dec("utilisation_pct", 5, 100), NOTE,
    ), refs=("cities",)),
    TableSchema("patients", "patient", _key("patient_id", "PT"), (
        _name("full_name", "person"), _date("birth_date", "1930-01-01", "2023-12-31"),
        _cat("blood_type", "A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"), _date("admitted", "2022-01-01", "2024-12-31"),
        _cat("ward", "Cardiology", "Oncology", "Pediatrics", "Neurology", "Orthopedics", "ICU", "Maternity"),
        _dec("weight_kg", 3, 160), _int("height_cm", 48, 205), _dec("bill", 50, 250_000, log=True),
        _int("stay_days", 0, 90), _cat("insurance", "Public", "Private", "None"), _int("heart_rate", 45, 140),
        _dec("temperature_c", 35, 41), _cat("outcome", "Recovered", "Transferred", "Ongoing", "Discharged"), NOTE,
    ), refs=("doctors",)),
    TableSchema("doctors", "doctor", _key("doctor_id", "DR"), (
        _name("full_name", "person"), _cat("specialty", "Cardiology", "Oncology", "Pediatrics", "Neurology", "Surgery",
                                           "Radiology", "General practice", "Ear, nose & throat"),
        _int("years_experience", 0, 45), _date("hired", "1990-01-01", "2024-12-31"), _int("salary", 60_000, 480_000),
        _cat("shift", "Day", "Night", "Rotating", "On call"), _dec("rating", 1, 5), _int("patients_per_week", 5, 160),
        _cat("board_certified", "Yes", "No"), _int("publications", 0, 300), _date("license_renewal", "2024-01-01", "2028-12-31"),
        _name("clinic", "place"), NOTE,
    ), refs=("cities",)),
    TableSchema("books", "book", _key("book_id", "BK"), (
        _name("title", "title"), _cat("genre", "Mystery", "Fantasy", "History", "Romance", "Science", "Poetry",
                                      "Biography", "Thriller", "Travel"),
        _int("pages", 48, 1_400), _date("published", "1950-01-01", "2024-12-31"), _dec("price", 3, 90),
        _dec("rating", 1, 5), _cat("language", "English", "French", "Spanish", "German", "Japanese", "Italian"),
        _int("copies_sold", 100, 9_000_000, log=True), _cat("format", "Hardcover", "Paperback", "E-book", "Audiobook"),
        _int("edition", 1, 12), _int("awards", 0, 9), _date("rights_expire", "2025-01-01", "2060-12-31"), NOTE,
    ), refs=("authors", "publishers")),
    TableSchema("authors", "author", _key("author_id", "AU"), (
        _name("full_name", "person"), _date("birth_date", "1920-01-01", "2002-12-31"), _COUNTRY,
        _int("books_written", 1, 90), _int("awards", 0, 25), _cat("main_genre", "Mystery", "Fantasy", "History",
                                                                  "Romance", "Science", "Poetry", "Thriller"),
        _dec("advance_kusd", 0, 2_500, log=True), _name("agent", "person"), _int("followers", 0, 3_000_000, log=True),
        _date("debut", "1945-01-01", "2024-12-31"), _cat("active", "Yes", "No"), NOTE,
    ), refs=("cities",)),
    TableSchema("publishers", "publisher", _key("publisher_id", "PB"), (
        _name("publisher_name", "company"), _date("founded", "1850-01-01", "2020-12-31"), _COUNTRY,
        _int("imprints", 1, 60), _dec("revenue_musd", 0.5, 9_000, log=True), _int("employees", 3, 15_000, log=True),
        _int("titles_per_year", 5, 4_000, log=True), _cat("ownership", "Independent", "Group", "University", "State"),
        _name("ceo", "person"), _cat("digital_first", "Yes", "No"), _date("last_merger", "1990-01-01", "2024-12-31"), NOTE,
    ), refs=("cities",)),
)
THEMES: dict[str, TableSchema] = {t.name: t for t in _THEMES}


def _check_themes(themes: dict[str, TableSchema]) -> None:
    # A broken theme would only show up as a strange sample much later; fail at import instead.
    keys = [t.key.name for t in themes.values()]
    assert len(set(keys)) == len(keys), "every theme needs its own key column name (it names foreign keys)"
    prefixes = [t.key.prefix for t in themes.values()]
    assert len(set(prefixes)) == len(prefixes), "key prefixes must differ so keys of different tables never clash"
    for t in themes.values():
        names = [c.name for c in t.columns]
        assert len(set(names)) == len(names) and t.key.name not in names, t.name
        assert not set(names) & set(keys), f"{t.name}: a plain column shares a name with a key column"
        assert any(c.kind in NUMERIC_KINDS for c in t.columns) and any(c.kind == "category" for c in t.columns)
        assert any(c.kind == "date" for c in t.columns), t.name
        assert all(r in themes for r in t.refs), t.name


_check_themes(THEMES)


def chain_depth(themes: dict[str, TableSchema] = THEMES) -> dict[str, int]:
    """Longest chain of foreign keys that starts at each theme (for drawing multi-hop paths)."""
    memo: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        best = 0
        for r in themes[name].refs:
            if r not in seen:
                best = max(best, 1 + depth(r, seen | {r}))
        return best

    for name in themes:
        memo[name] = depth(name, frozenset({name}))
    return memo


# -- canonical text of values ----------------------------------------------------------------------
def cents_text(cents: int) -> str:
    """A decimal held in hundredths as its canonical text: always two places."""
    return f"{cents // 100}.{cents % 100:02d}"


def cell_text(kind: str, value: object) -> str:
    """The canonical text of one typed value (the same text every rendering shows)."""
    if kind == "decimal":
        return cents_text(int(value))  # type: ignore[call-overload]
    if kind == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return str(value)


def parse_cell(kind: str, text: str) -> int | dt.date | str:
    """Inverse of `cell_text` into the frame's representation (decimals in hundredths)."""
    if kind == "int":
        return int(text)
    if kind == "decimal":
        d = Decimal(text)
        return int(d * 100)
    if kind == "date":
        return dt.date.fromisoformat(text)
    return text


def _text_expr(name: str, kind: str) -> pl.Expr:
    col = pl.col(name)
    if kind == "decimal":
        return pl.concat_str([(col // 100).cast(pl.String), pl.lit("."), (col % 100).cast(pl.String).str.zfill(2)])
    if kind in ("int", "date"):
        return col.cast(pl.String)  # polars writes dates as ISO yyyy-mm-dd
    return col


# -- generating rows -------------------------------------------------------------------------------
@dataclass
class TableSpec:
    """One table of a prompt: its theme, the columns it shows (key first), and its title."""

    schema: TableSchema
    columns: tuple[Column, ...]
    title: str  # "Table 2: orders"
    label: str  # "Table 2"

    @property
    def key(self) -> str:
        return self.schema.key.name

    @property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def fk_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "fk"]


def choose_columns(schema: TableSchema, rng: np.random.Generator, n: int, fks: Sequence[Column]) -> tuple[Column, ...]:
    """Key, foreign keys, at least one numeric, one category and one date column, then random others.

    The order of the rest is the theme's order, so tables of a theme look alike across samples.
    """
    pool = list(schema.columns)
    picked: list[Column] = []
    for kinds in (NUMERIC_KINDS, ("category",), ("date",)):
        options = [c for c in pool if c.kind in kinds and c not in picked]
        picked.append(options[int(rng.integers(len(options)))])
    rest = [c for c in pool if c not in picked]
    want = max(0, min(n - 1 - len(fks) - len(picked), len(rest)))
    if want:
        idx = rng.choice(len(rest), size=want, replace=False)
        picked += [rest[i] for i in sorted(idx)]
    ordered = [c for c in pool if c in picked]
    return (schema.key, *fks, *ordered)


def block_size(b: int) -> int:
    """Rows of block b: small first blocks keep short samples cheap, then BLOCK rows each."""
    return min(BLOCK, 32 << b)


class TableData:
    """The rows of one table, generated lazily in blocks from seeded generators.

    `rng_for_block(b)` must return a fresh generator that depends only on b (and whatever fixed the
    table), so rows are the same however many are asked for.
    """

    def __init__(self, spec: TableSpec, table_rng: np.random.Generator,
                 rng_for_block: Callable[[int], np.random.Generator]) -> None:
        self.spec = spec
        self._rng_for_block = rng_for_block
        # A skewed, table-specific popularity per category, fixed for all blocks, so counts and
        # argmax over groups differ from sample to sample.
        self._weights = {c.name: table_rng.dirichlet(np.full(len(c.choices), 2.0))
                         for c in spec.columns if c.kind == "category"}
        self._blocks: list[pl.DataFrame] = []
        self._seen_keys: set[int] = set()
        self._frame: pl.DataFrame | None = None

    @property
    def available(self) -> int:
        return sum(len(b) for b in self._blocks)

    def ensure(self, n: int) -> None:
        while self.available < n:
            self._blocks.append(self._block(len(self._blocks)))
            self._frame = None

    def frame(self, n: int) -> pl.DataFrame:
        """The first n rows: typed columns, foreign keys still as draws in [0, 1)."""
        self.ensure(n)
        if self._frame is None:
            self._frame = pl.concat(self._blocks, rechunk=True)
        return self._frame.head(n)

    def _block(self, b: int) -> pl.DataFrame:
        rng = self._rng_for_block(b)
        n = block_size(b)
        return pl.DataFrame({c.name: self._values(c, rng, n) for c in self.spec.columns})

    def _keys(self, c: Column, rng: np.random.Generator, n: int) -> pl.Series:
        # Distinct across blocks: draw, drop what earlier rows used, draw again for the gap.
        out: list[int] = []
        while len(out) < n:
            for v in rng.integers(0, 10**KEY_DIGITS, size=n - len(out) + 8).tolist():
                if v not in self._seen_keys and len(out) < n:
                    self._seen_keys.add(v)
                    out.append(v)
        return pl.Series(c.name, [f"{c.prefix}{v:0{KEY_DIGITS}d}" for v in out], dtype=pl.String)

    def _values(self, c: Column, rng: np.random.Generator, n: int) -> pl.Series:
        if c.kind == "key":
            return self._keys(c, rng, n)
        if c.kind == "fk":
            return pl.Series(c.name, rng.random(n))
        if c.kind in ("int", "decimal"):
            scale = 100 if c.kind == "decimal" else 1
            lo, hi = round(c.low * scale), round(c.high * scale)
            if c.log:
                u = rng.random(n)
                vals = np.floor(np.exp(np.log(lo + 1) + u * (np.log(hi + 1) - np.log(lo + 1)))).astype(np.int64) - 1
                vals = np.clip(vals, lo, hi)
            else:
                vals = rng.integers(lo, hi + 1, size=n, dtype=np.int64)
            return pl.Series(c.name, vals, dtype=pl.Int64)
        if c.kind == "date":
            lo = (dt.date.fromisoformat(c.start) - _EPOCH).days
            hi = (dt.date.fromisoformat(c.end) - _EPOCH).days
            days = rng.integers(lo, hi + 1, size=n).astype(np.int32)
            return pl.Series(c.name, days, dtype=pl.Int32).cast(pl.Date)
        if c.kind == "category":
            idx = rng.choice(len(c.choices), size=n, p=self._weights[c.name])
            return pl.Series(c.name, np.asarray(c.choices, dtype=object)[idx].tolist(), dtype=pl.String)
        if c.kind == "name":
            return pl.Series(c.name, _names(c.pool, rng, n), dtype=pl.String)
        if c.kind == "text":
            return pl.Series(c.name, _notes(rng, n), dtype=pl.String)
        raise ValueError(f"unknown column kind {c.kind!r}")


def _pick(pool: Sequence[str], rng: np.random.Generator, n: int) -> list[str]:
    return [pool[i] for i in rng.integers(0, len(pool), size=n)]


def _names(pool: str, rng: np.random.Generator, n: int) -> list[str]:
    if pool == "person":
        return [f"{a} {b}" for a, b in zip(_pick(FIRST, rng, n), _pick(LAST, rng, n))]
    if pool == "company":
        return [f"{a} {b}" for a, b in zip(_pick(COMPANY_A, rng, n), _pick(COMPANY_B, rng, n))]
    if pool == "product":
        return [f"{a} {b} {m}" for a, b, m in zip(_pick(PRODUCT_ADJ, rng, n), _pick(PRODUCT_NOUN, rng, n),
                                                  rng.integers(100, 1000, size=n).tolist())]
    if pool == "title":
        of = _pick(PLACES, rng, n)
        return [f"The {a} {b}" if u < 0.6 else f"The {a} {b} of {p}"
                for a, b, p, u in zip(_pick(TITLE_ADJ, rng, n), _pick(TITLE_NOUN, rng, n), of, rng.random(n))]
    if pool == "place":
        kinds = ("Hub", "Center", "Park", "Yard", "Point", "House", "Depot")
        return [f"{a} {b}" for a, b in zip(_pick(PLACES, rng, n), _pick(kinds, rng, n))]
    raise ValueError(f"unknown name pool {pool!r}")


def _notes(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(2, 6, size=n)
    words = rng.integers(0, len(NOTE_WORDS), size=(n, 5))
    comma = rng.random(n) < 0.3
    out = []
    for i in range(n):
        w = [NOTE_WORDS[j] for j in words[i, : lengths[i]]]
        if comma[i] and len(w) > 2:
            w[1] += ","  # a comma inside a value exercises CSV quoting
        out.append(" ".join(w))
    return out


def resolve_foreign_keys(frame: pl.DataFrame, spec: TableSpec, targets: dict[str, pl.Series]) -> pl.DataFrame:
    """Replace each foreign-key draw u by the key of row floor(u * n) of the referenced table."""
    exprs = []
    for c in spec.fk_columns():
        keys = targets[c.ref]
        idx = (frame[c.name] * len(keys)).floor().cast(pl.Int64).clip(0, len(keys) - 1)
        exprs.append(keys.gather(idx).alias(c.name))
    return frame.with_columns(exprs) if exprs else frame


# -- rendering -------------------------------------------------------------------------------------
def _csv_escape(expr: pl.Expr) -> pl.Expr:
    needs = expr.str.contains(r'[",\r\n]')
    return pl.when(needs).then(pl.concat_str([pl.lit('"'), expr.str.replace_all('"', '""', literal=True), pl.lit('"')])
                               ).otherwise(expr)


def _html_escape(expr: pl.Expr) -> pl.Expr:
    return (expr.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True))


def _json_string(expr: pl.Expr) -> pl.Expr:
    esc = expr.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    return pl.concat_str([pl.lit('"'), esc, pl.lit('"')])


def render_rows(frame: pl.DataFrame, spec: TableSpec, fmt: str) -> tuple[str, list[str], str]:
    """(head, one string per row, tail) of a table: `head + "\\n".join(rows) + tail` is the table.

    Split this way so the length fitting can count tokens per row once and sum them. One polars
    query builds every row string; only free-text kinds are escaped (keys, numbers and dates
    never hold a special character of any format).
    """
    names = [c.name for c in spec.columns]
    kinds = [c.kind for c in spec.columns]
    texts = [_text_expr(n, k) for n, k in zip(names, kinds)]
    free = [k in ("name", "category", "text") for k in kinds]
    if fmt == "markdown":
        exprs = [t.str.replace_all("|", "\\|", literal=True) if f else t for t, f in zip(texts, free)]
        row = pl.concat_str([pl.lit("| "), pl.concat_str(exprs, separator=" | "), pl.lit(" |")])
        head = "| " + " | ".join(names) + " |\n" + "|" + "---|" * len(names) + "\n"
        tail = ""
    elif fmt == "csv":
        row = pl.concat_str([_csv_escape(t) if f else t for t, f in zip(texts, free)], separator=",")
        head = ",".join(names) + "\n"
        tail = ""
    elif fmt == "jsonl":
        parts = []
        for i, (n, k, t) in enumerate(zip(names, kinds, texts)):
            value = t if k in NUMERIC_KINDS else _json_string(t)
            parts += [pl.lit(("{" if i == 0 else ", ") + json.dumps(n) + ": "), value]
        parts.append(pl.lit("}"))
        row = pl.concat_str(parts)
        head, tail = "", ""
    elif fmt == "html":
        parts = [pl.lit("<tr>")]
        for t, f in zip(texts, free):
            parts += [pl.lit("<td>"), _html_escape(t) if f else t, pl.lit("</td>")]
        parts.append(pl.lit("</tr>"))
        row = pl.concat_str(parts)
        head = "<table>\n<thead>\n<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>\n</thead>\n<tbody>\n"
        tail = "\n</tbody>\n</table>"
    else:
        raise ValueError(f"unknown format {fmt!r}")
    rows = frame.select(row.alias("row"))["row"].to_list() if len(frame) else []
    return head, rows, tail


def render(frame: pl.DataFrame, spec: TableSpec, fmt: str) -> str:
    """The table as text in one of `FORMATS` (without its title line)."""
    head, rows, tail = render_rows(frame, spec, fmt)
    return head + "\n".join(rows) + tail


@dataclass
class Built:
    """A table at a given size: the typed frame (foreign keys resolved) and its rendered parts."""

    spec: TableSpec
    frame: pl.DataFrame
    head: str
    rows: list[str]
    tail: str

    def text(self) -> str:
        return f"{self.spec.title}\n{self.head}" + "\n".join(self.rows) + self.tail


def column_meta(spec: TableSpec) -> list[list[str]]:
    """[[name, kind], ...] with the referenced theme appended for foreign keys (for `meta`)."""
    return [[c.name, c.kind, c.ref] if c.kind == "fk" else [c.name, c.kind] for c in spec.columns]


__all__ = [
    "BLOCK",
    "FORMATS",
    "NUMERIC_KINDS",
    "ORDERED_KINDS",
    "THEMES",
    "Built",
    "Column",
    "TableData",
    "TableSchema",
    "TableSpec",
    "block_size",
    "cell_text",
    "cents_text",
    "chain_depth",
    "choose_columns",
    "column_meta",
    "fk_column",
    "parse_cell",
    "render",
    "render_rows",
    "resolve_foreign_keys",
]
