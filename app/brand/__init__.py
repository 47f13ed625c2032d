"""The newsroom's own page: its name, logo, colours, appeal and footer links
from config/, per language, on the donation form and the thanks page
(`page`), served colours (`views`: /brand.css). Never inline style."""
