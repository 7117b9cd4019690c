"""What is shown: the terminal table, PNG plots and the HTML report, all read from the store."""
