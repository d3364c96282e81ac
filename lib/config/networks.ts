// Lists of IP networks in the config (`trusted_proxies`, IpFilter's `allow`
// and `deny`): each entry an IP or CIDR, every bad entry reported at its index.

import { shownValue, type TableReader } from "./fields.ts";
import { type Cidr, parseCidr } from "../net/address.ts";

/** Reads `key` as a list of networks; null when the key is absent. */
export function readNetworks(r: TableReader, key: string): Cidr[] | null {
  const list = r.array(key);
  if (list === null) return null;
  const out: Cidr[] = [];
  list.forEach((v, i) => {
    const path = r.at(key) + `[${i}]`;
    if (typeof v !== "string") {
      r.problems.push({ path, message: 'expected a string such as "10.0.0.0/8"' });
      return;
    }
    const cidr = parseCidr(v);
    if (typeof cidr === "string") {
      r.problems.push({ path, message: `invalid network ${shownValue(v)}: ${cidr}` });
    } else out.push(cidr);
  });
  return out;
}
