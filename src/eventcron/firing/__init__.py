"""Firing: from "an occurrence is due" to "its rows are in the ledger".

The plan (jobs from the schedule file), the clock that calls firing at each nominal time,
catch-up after downtime, and the rows each occurrence makes.
"""
