"""SynL question wordings as data: several phrasings per template, filled with `str.format`.

`templates.py` decides what a question asks (its query and answer format); this module only says
how the ask reads, so wordings can grow without the logic growing. Each list is one template's
phrasings; a sample draws one uniformly and records its index in `meta["template"]`
("cell/4"). Every phrasing must name every table, column, key and value its fields carry,
keep the template's comparison words, and stay one question: the answer format instruction is
appended by the template, unchanged, after the ask.

Fields: {table} table label with theme, {key} key column, {k} a key, {col} a column, {entity}
the row's entity, {entities} the table's theme, {value} a quoted value, {conds} conditions,
{where} " where ..." or "", {path} the foreign-key steps, {nested}/{first}/{last}/{end} chain
parts, {word} the comparison word, {scope} the rows aggregated, {n} the k of a top-k,
{k1}/{k2} two keys, {among} " among the rows where ..." or "".
"""

from __future__ import annotations

CELL = [
    "In {table}, what is the {col} of the row whose {key} is {k}?",
    "Look up {entity} {k} in {table}. What is its {col}?",
    "What {col} does {table} list for {key} {k}?",
    "Find the row of {table} with {key} {k}. What does its {col} column hold?",
    "{table} has a row for {entity} {k}. What is written in its {col} column?",
    "What is the value of {col} for {key} {k} in {table}?",
    "Which {col} is recorded in {table} for the {entity} with {key} {k}?",
    "Read {table}: for {key} {k}, what is the {col}?",
    "Give the {col} of {entity} {k}, as {table} shows it.",
]
REVERSE = [
    "In {table}, which {key} has {col} equal to {value}?",
    "Find the {entity} in {table} whose {col} is {value}. What is its {key}?",
    "Which row of {table} has {value} in its {col} column? Give its {key}.",
    "One {entity} in {table} has {col} {value}. Which {key} is it?",
    "Look for {col} = {value} in {table}. What is the {key} of that row?",
    "What is the {key} of the only row of {table} whose {col} is {value}?",
]
FILTER_KEYS = [
    "List every {key} in {table} where {conds}.",
    "Which rows of {table} satisfy all of these: {conds}?",
    "Find all {entities} in {table} for which {conds}.",
    "Which {key} values of {table} belong to rows where {conds}?",
    "Select the rows of {table} where {conds}. Which are their {key} values?",
    "In {table}, which {entities} meet every condition: {conds}?",
]
CHAIN = [
    "Start at the row of {table} whose {key} is {k}; {path}. What is the value of {col} in the row you reach?",
    (
        "What is the {col} value of the {nested} of {entity} {k}? Foreign keys are the columns named like another "
        "table's key; {path}."
    ),
    "Begin with {entity} {k} in {table}; {path}. Which {col} does the final row hold?",
    "From {key} {k} of {table}, {path}. What {col} do you find there?",
    "Take the row of {table} with {key} {k}, then {path}. What is the {col} of the last row?",
    "Follow the links from {entity} {k} ({table}): {path}. Report the {col} of the row reached.",
]
CHAIN_COUNT = [
    "How many rows of {first} lead to a row of {last} where {conds}? To follow a row, {path}.",
    "Count the {entities} whose {last_entity} has {conds} ({path}).",
    "Following each row of {first} ({path}), how many reach a row of {last} where {conds}?",
    "For how many rows of {first} does the chain {path} end at a row of {last} with {conds}?",
    "How many {entities} in {first} are linked, via {path}, to a row of {last} where {conds}?",
    "Trace every row of {first}: {path}. How many end at a row of {last} where {conds}?",
]
CHAIN_KEYS = [
    "Which rows of {first} lead to {last_entity} {end} of {last}? To follow a row, {path}.",
    "Trace each row of {first} ({path}). Which ones reach {last_entity} {end} of {last}?",
    "Which rows of {first} are linked to {last_entity} {end} of {last} when you {path}?",
]
COUNT = [
    "In {table}, how many rows satisfy: {conds}?",
    "Count the {entities} in {table}{where}.",
    "How many rows of {table} are there{where}?",
    "What is the number of {entities} listed in {table}{where}?",
    "Tally the rows of {table}{where}. How many are there?",
    "How many {entities} does {table} hold{where}?",
]
AGGREGATE = [
    "What is the {word} {col} over {scope}?",
    "Over {scope}, what is the {word} value of {col}?",
    "Compute the {word} {col} across {scope}.",
]
ARG = [
    "Which {key} in {table} has the {word} {col}{among}?",
    "In {table}, which row has the {word} {col}{among}? Give its {key}.",
    "Find the {entity} with the {word} {col} in {table}{among}. What is its {key}?",
]
TOPK = [
    "Which {n} rows of {table} have the {word} {col}?",
    "Name the {n} {entities} of {table} with the {word} {col}.",
    "In {table}, which {n} rows rank first by {word} {col}?",
]
DISTINCT = [
    "How many distinct values of {col} appear in {table}{among}?",
    "In {table}, how many different {col} values occur{among}?",
    "Count the distinct {col} values in {table}{among}.",
]
LARGER = [  # larger and smaller share these, {word} carrying the direction
    "In {table}, which has the {word} {col}: {entity} {k1} or {entity} {k2}?",
    "Compare {key} {k1} and {key} {k2} in {table}. Which one has the {word} {col}?",
    "Of {entity} {k1} and {entity} {k2} in {table}, which shows the {word} {col}?",
    "Between {key} {k1} and {key} {k2}, which has the {word} {col} according to {table}?",
    "Look at {col} for {entity} {k1} and {entity} {k2} in {table}. Which is {word}?",
    "{table}: does {entity} {k1} or {entity} {k2} have the {word} {col}?",
]
YESNO = [
    "In {table}, is the {col} of {entity} {k1} {word} than that of {entity} {k2}?",
    "According to {table}, is {entity} {k1}'s {col} {word} than the {col} of {entity} {k2}?",
    "Check {table}: is the {col} of {key} {k1} {word} than the {col} of {key} {k2}?",
    "Is {col} {word} for {entity} {k1} than for {entity} {k2} in {table}?",
]
DIFFERENCE = [
    "In {table}, what is the absolute difference between the {col} of {entity} {k1} and the {col} of {entity} {k2}?",
    "How far apart are the {col} values of {key} {k1} and {key} {k2} in {table}?",
    "What is the gap in {col} between {entity} {k1} and {entity} {k2}, according to {table}?",
    "By how much do {entity} {k1} and {entity} {k2} differ in {col} in {table}?",
    "Take the {col} of {key} {k1} and of {key} {k2} in {table}. What is their absolute difference?",
]
