"""Evaluation protocols: emotion-style-transfer settings SSST..USUE (``emotk evaluate est``), their measures and
reports, and aggregation of SER/ERC runs into tables (``emotk evaluate ser|erc``)."""
