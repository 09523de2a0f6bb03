"""What people read: typed report sections, verdicts graded once, the report JSON and its HTML
page, and the model card."""
