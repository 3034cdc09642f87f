// The .cnx reader and writer (Formats/CNX.md).
